// One import for e2e/integration tests: `import { createDockerHost, ... } from '../harness/index.js'`.
export { CleanupError, CleanupStack, type UndoStep } from './cleanup.js';
export { DOCKER_CLIENT, DockerClient } from './docker-client.js';
export { DOCKERD_BINARY, Dockerd, type DockerdOptions, startDockerd } from './dockerd.js';
export { type CommandResult, type RunOptions, run, runOk } from './exec.js';
export { createDockerHost, DockerHost, type DockerHostOptions, wireHosts, type WireOptions } from './host.js';
export { IMAGE_APPLETS, importTestImage, rootfsTarball, TEST_IMAGE } from './image.js';
export { removeLeftovers, pidsReferencingDir, cgroupDirs, mountsBelow, type LeftoverReport } from './leftovers.js';
export { logBlock, tailFile } from './logs.js';
export { assertLinkName, assertSocketPath, BASE_DIR, cgroupParent, linkName, newRunId, runDir } from './names.js';
export { createNetns, createVethPair, deleteNetns, execInNetns, execInNetnsOk, ipIn, netnsExists, netnsPath, type VethEnd } from './netns.js';
export { assertPreflight, findProblems, isStaticElf, type PreflightOptions } from './preflight.js';
export { isAlive, kill9, terminate, waitForExit } from './processes.js';
export { REPO_ROOT, startTsnet, TSNET_CLI, TsnetDaemon, type TsnetOptions } from './tsnet.js';
export { httpGetUnix, httpPostUnix, socketAccepts } from './unix-socket.js';
export { waitUntil, type WaitOptions } from './wait.js';
export { createOutside, nodeInNetns, REMOTE_SERVER, udpAsk, udpEchoServer, UPLINK_HOST, UPLINK_OUTSIDE } from './outside.js';
export { dig, parseDig, type DigAnswer } from './dig.js';
export { type Dnsmasq, type DnsmasqOptions, startDnsmasq } from './dnsmasq.js';

// restrict-address-families FAMILIES PROGRAM [ARG...]
//
// Runs PROGRAM with socket(2) limited to the comma-separated address
// families (AF_UNIX,AF_INET,...): any other family fails with EAFNOSUPPORT,
// which is what systemd's RestrictAddressFamilies= does (with a seccomp
// filter, as here). The test machine's init is not systemd, so tests apply
// the unit's restrictions with this and setpriv instead of systemd-run.
// Built by service-sandbox.ts with cc; children inherit the filter.
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define NATIVE_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NATIVE_ARCH AUDIT_ARCH_AARCH64
#else
#error "add this machine's AUDIT_ARCH"
#endif

static const struct {
  const char *name;
  int family;
} FAMILIES[] = {
  {"AF_UNIX", AF_UNIX}, {"AF_INET", AF_INET}, {"AF_INET6", AF_INET6}, {"AF_NETLINK", AF_NETLINK},
  {"AF_PACKET", AF_PACKET}, {"AF_BLUETOOTH", AF_BLUETOOTH}, {"AF_VSOCK", AF_VSOCK}, {"AF_ALG", AF_ALG},
};
#define KNOWN (sizeof(FAMILIES) / sizeof(FAMILIES[0]))

static int family_of(const char *name) {
  for (size_t i = 0; i < KNOWN; i++)
    if (strcmp(FAMILIES[i].name, name) == 0) return FAMILIES[i].family;
  fprintf(stderr, "restrict-address-families: unknown family %s (add it to the table)\n", name);
  exit(2);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: restrict-address-families AF_X,AF_Y PROGRAM [ARG...]\n");
    return 2;
  }
  int allowed[KNOWN];
  size_t count = 0;
  for (char *name = strtok(argv[1], ","); name; name = strtok(NULL, ",")) {
    if (count == KNOWN) return 2;
    allowed[count++] = family_of(name);
  }

  // Another architecture's calls and other syscalls jump to ALLOW (the last
  // instruction); socket() of a family not listed reaches the refusal.
  struct sock_filter filter[7 + KNOWN];
  size_t n = 0;
  filter[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
  filter[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NATIVE_ARCH, 0, 4 + count);
  filter[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
  filter[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 0, 2 + count);
  // The family is an int: the low 32 bits of the first argument (little-endian machines).
  filter[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]));
  for (size_t i = 0; i < count; i++) {
    // Jump over the remaining checks and the refusal to ALLOW.
    filter[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)allowed[i], count - i, 0);
  }
  filter[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EAFNOSUPPORT & SECCOMP_RET_DATA));
  filter[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  struct sock_fprog program = {.len = (unsigned short)n, .filter = filter};

  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) {
    perror("restrict-address-families: seccomp");
    return 2;
  }
  execvp(argv[2], argv + 2);
  perror(argv[2]);
  return 127;
}

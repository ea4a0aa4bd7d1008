// A stack of undo steps. Whatever a test creates, it registers the matching
// teardown right after creating it; `run()` undoes everything in reverse
// order, even when the test (or an earlier undo step) failed. A failing step
// never stops the others: all steps run, and the failures are reported
// together at the end so a leak is loud instead of silent.

export type UndoStep = () => unknown | Promise<unknown>;

export class CleanupError extends AggregateError {
  constructor(errors: Error[]) {
    super(errors, `cleanup: ${errors.length} step(s) failed:\n` + errors.map((e) => `  - ${e.message}`).join('\n'));
    this.name = 'CleanupError';
  }
}

export class CleanupStack {
  private readonly steps: { label: string; undo: UndoStep }[] = [];

  /** Registers an undo step; `label` names it in error messages. */
  defer(label: string, undo: UndoStep): void {
    this.steps.push({ label, undo });
  }

  /** Number of steps still pending. */
  get size(): number {
    return this.steps.length;
  }

  /**
   * Runs and removes every step, newest first. Safe to call twice (the second
   * call has nothing left to do). Throws a CleanupError listing every failed step.
   */
  async run(): Promise<void> {
    const failures: Error[] = [];
    for (let step = this.steps.pop(); step; step = this.steps.pop()) {
      try {
        await step.undo();
      } catch (err) {
        failures.push(new Error(`${step.label}: ${err instanceof Error ? err.message : String(err)}`, { cause: err }));
      }
    }
    if (failures.length > 0) throw new CleanupError(failures);
  }
}

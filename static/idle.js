// When a kiosk call has gone quiet: a pure state machine, time passed in (`now`, ms).
//
//   const watch = new SilenceWatch({ idleMs: 20000, warnMs: 5000 });
//   watch.activity(performance.now());          // the caller spoke, the agent replied, a tap
//   watch.setBusy(true, now);                   // the agent is thinking or speaking: never idle
//   watch.check(now) // -> { phase: "ok" | "warn" | "end", remainingMs }

export class SilenceWatch {
  constructor({ idleMs = 20000, warnMs = 5000 } = {}) {
    if (!(idleMs > 0)) throw new RangeError(`idleMs must be > 0, got ${idleMs}`);
    if (!(warnMs >= 0 && warnMs < idleMs)) {
      throw new RangeError(`warnMs must be within 0 .. idleMs (${idleMs}), got ${warnMs}`);
    }
    this.idleMs = idleMs;
    this.warnMs = warnMs;
    this.busy = false;
    this.last = null;
  }

  /** Something happened at `now`: the quiet time starts again. */
  activity(now) {
    this.last = now;
  }

  /** While busy (the agent talks or thinks) the call never counts as quiet. */
  setBusy(busy, now) {
    this.busy = Boolean(busy);
    this.activity(now);
  }

  check(now) {
    if (this.busy || this.last === null) return { phase: "ok", remainingMs: this.idleMs };
    const remainingMs = Math.max(0, this.idleMs - (now - this.last));
    if (remainingMs === 0) return { phase: "end", remainingMs };
    if (remainingMs <= this.warnMs) return { phase: "warn", remainingMs };
    return { phase: "ok", remainingMs };
  }
}

// Connection figures from the browser's own WebRTC statistics (RTCPeerConnection.getStats)
// and the server's quality rung. Pure functions plus one small poller; no DOM.
//
//   const monitor = new StatsMonitor(pc);
//   monitor.addEventListener("stats", (e) => console.log(e.detail.fps, e.detail.audioDelayMs));
//   monitor.start();
//   rateConnection({ stats, quality }) // -> { level: "good" | "fair" | "poor" | "unknown", why }

export const STATS_INTERVAL_MS = 1000;

const INBOUND_FIELDS = [
  "timestamp",
  "bytesReceived",
  "packetsReceived",
  "packetsLost",
  "jitter",
  "jitterBufferDelay",
  "jitterBufferEmittedCount",
  "framesDecoded",
  "framesDropped",
  "framesPerSecond",
  "frameWidth",
  "frameHeight",
  "freezeCount",
  "totalFreezesDuration",
  "totalAudioEnergy",
  "totalSamplesDuration",
  "audioLevel",
  "concealedSamples",
  "totalSamplesReceived",
  "fecPacketsReceived",
];

function pick(stat) {
  const out = {};
  for (const key of INBOUND_FIELDS) if (typeof stat[key] === "number") out[key] = stat[key];
  return out;
}

/**
 * The parts of an RTCStatsReport (or an array of its values) this module reads:
 * `{ t, audio, video, rttMs }` with plain numbers only, so it can be kept and compared.
 */
export function snapshot(report) {
  const values = typeof report?.values === "function" ? [...report.values()] : [...(report ?? [])];
  const snap = { t: null, audio: null, video: null, rttMs: null };
  for (const stat of values) {
    if (stat.type === "inbound-rtp" && (stat.kind === "audio" || stat.kind === "video")) {
      snap[stat.kind] = pick(stat);
      snap.t = Math.max(snap.t ?? 0, stat.timestamp ?? 0);
    } else if (
      stat.type === "candidate-pair" &&
      (stat.nominated || stat.state === "succeeded") &&
      typeof stat.currentRoundTripTime === "number"
    ) {
      snap.rttMs = stat.currentRoundTripTime * 1000;
    }
  }
  return snap;
}

function delta(prev, cur, key) {
  if (!cur || typeof cur[key] !== "number") return null;
  const before = prev && typeof prev[key] === "number" ? prev[key] : 0;
  return cur[key] - before;
}

function ratio(num, den, scale = 1) {
  return num !== null && den !== null && den > 0 ? (num / den) * scale : null;
}

function round(x, digits = 1) {
  if (x === null || x === undefined || !Number.isFinite(x)) return null;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Playout delay (ms) of one stream over the interval: jitterBufferDelay / emitted count. */
function bufferDelayMs(prev, cur) {
  const spent = delta(prev, cur, "jitterBufferDelay");
  const emitted = delta(prev, cur, "jitterBufferEmittedCount");
  const interval = ratio(spent, emitted, 1000);
  if (interval !== null) return interval;
  return ratio(cur?.jitterBufferDelay ?? null, cur?.jitterBufferEmittedCount ?? null, 1000);
}

/**
 * Figures over the interval between two snapshots (`prev` may be null: totals since start).
 * Every field is a number or null when the browser does not report it.
 */
export function summarize(prev, cur) {
  const video = cur?.video ?? null;
  const audio = cur?.audio ?? null;
  const pv = prev?.video ?? null;
  const pa = prev?.audio ?? null;
  const dtS = prev?.t && cur?.t ? (cur.t - prev.t) / 1000 : null;
  const decoded = delta(pv, video, "framesDecoded");
  const fps = dtS ? ratio(decoded, dtS) : (video?.framesPerSecond ?? null);
  const bytes = delta(pv, video, "bytesReceived");
  const lost = (delta(pv, video, "packetsLost") ?? 0) + (delta(pa, audio, "packetsLost") ?? 0);
  const got = (delta(pv, video, "packetsReceived") ?? 0) + (delta(pa, audio, "packetsReceived") ?? 0);
  const energy = delta(pa, audio, "totalAudioEnergy");
  const duration = delta(pa, audio, "totalSamplesDuration");
  const level = duration ? Math.sqrt(Math.max(0, energy) / duration) : (audio?.audioLevel ?? null);
  const audioDelayMs = bufferDelayMs(pa, audio);
  const videoDelayMs = bufferDelayMs(pv, video);
  return {
    fps: round(fps),
    width: video?.frameWidth ?? null,
    height: video?.frameHeight ?? null,
    videoKbps: round(dtS ? ratio(bytes, dtS, 8 / 1000) : null, 0),
    audioJitterMs: round(audio?.jitter !== undefined ? audio.jitter * 1000 : null),
    videoJitterMs: round(video?.jitter !== undefined ? video.jitter * 1000 : null),
    audioDelayMs: round(audioDelayMs),
    videoDelayMs: round(videoDelayMs),
    // > 0: pictures are held longer than sound in the receive buffers (lip-sync offset).
    avOffsetMs: round(audioDelayMs !== null && videoDelayMs !== null ? videoDelayMs - audioDelayMs : null),
    lossPct: round(lost + got > 0 ? (100 * lost) / (lost + got) : null),
    freezes: video?.freezeCount ?? null,
    framesDropped: video?.framesDropped ?? null,
    rttMs: round(cur?.rttMs ?? null),
    audioLevel: round(level, 4),
  };
}

const LEVEL_ORDER = ["unknown", "good", "fair", "poor"];

function worse(a, b) {
  return LEVEL_ORDER.indexOf(a) >= LEVEL_ORDER.indexOf(b) ? a : b;
}

/**
 * One verdict for the indicator from the browser's figures and the server's `quality`
 * event (either may be null). `why` lists the figures that lowered it.
 */
export function rateConnection({ stats = null, quality = null } = {}) {
  let level = "unknown";
  const why = [];
  const judge = (value, fair, poor, label, higherIsWorse = true) => {
    if (value === null || value === undefined) return;
    const bad = (limit) => (higherIsWorse ? value > limit : value < limit);
    let verdict = "good";
    if (bad(poor)) verdict = "poor";
    else if (bad(fair)) verdict = "fair";
    if (verdict !== "good") why.push(`${label} ${value}`);
    level = worse(verdict, level);
  };
  if (stats) {
    judge(stats.fps, 18, 8, "fps", false);
    judge(stats.lossPct, 2, 8, "loss %");
    judge(stats.rttMs, 250, 500, "rtt ms");
    judge(stats.videoDelayMs, 400, 1200, "video delay ms");
    judge(stats.audioJitterMs, 40, 100, "jitter ms");
  }
  if (quality && typeof quality.rung === "number") {
    judge(quality.rung, 1, 3, "quality rung");
  }
  return { level, why };
}

/** Polls `pc.getStats()` and dispatches "stats" events whose detail is `summarize(...)`. */
export class StatsMonitor extends EventTarget {
  constructor(pc, { intervalMs = STATS_INTERVAL_MS } = {}) {
    super();
    this.pc = pc;
    this.intervalMs = intervalMs;
    this.latest = null;
    this._prev = null;
    this._timer = null;
  }

  start() {
    if (this._timer !== null) return;
    this._timer = setInterval(() => this.sample().catch(() => {}), this.intervalMs);
  }

  stop() {
    clearInterval(this._timer);
    this._timer = null;
  }

  async sample() {
    if (!this.pc || this.pc.connectionState === "closed") return null;
    const snap = snapshot(await this.pc.getStats());
    const figures = summarize(this._prev, snap);
    this._prev = snap;
    this.latest = figures;
    this.dispatchEvent(new CustomEvent("stats", { detail: figures }));
    return figures;
  }
}

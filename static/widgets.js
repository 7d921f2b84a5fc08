// DOM pieces shared by the call page and the kiosk page: captions, the connection-quality
// indicator, the microphone privacy indicator and the first-frame mark.
import { rateConnection, StatsMonitor } from "./stats.js";

const LEVEL_LABELS = { unknown: "–", good: "Good", fair: "Fair", poor: "Poor" };

/** A rolling list of "You" / "Agent" lines; sentences of one reply join one line. */
export class Captions {
  constructor(list, { max = 50, names = { caller: "You", agent: "Agent" } } = {}) {
    this.list = list;
    this.max = max;
    this.names = names;
  }

  add(who, text, { key = null, lang = null, source = null } = {}) {
    if (key) {
      const existing = this.list.querySelector(`[data-key="${CSS.escape(key)}"]`);
      if (existing) {
        existing.querySelector(".text").textContent += ` ${text}`;
        if (source) this._cite(existing, source);
        this._scroll();
        return existing;
      }
    }
    const li = document.createElement("li");
    li.className = `caption ${who}`;
    if (key) li.dataset.key = key;
    if (lang) li.lang = lang;
    const label = document.createElement("span");
    label.className = "who";
    label.textContent = this.names[who] ?? who;
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    li.append(label, body);
    if (source) this._cite(li, source);
    this.list.append(li);
    while (this.list.children.length > this.max) this.list.firstElementChild.remove();
    this._scroll();
    return li;
  }

  clear() {
    this.list.replaceChildren();
  }

  /** Show where a reply came from ("manual.pdf, p. 3") under its line. */
  _cite(li, source) {
    let cite = li.querySelector(".source");
    if (!cite) {
      cite = document.createElement("cite");
      cite.className = "source";
      li.append(cite);
    }
    cite.textContent = source;
  }

  _scroll() {
    const box = this.list.parentElement;
    if (box) box.scrollTop = box.scrollHeight;
  }
}

/** Feed `client`'s captions into `captions` (caller transcripts and agent replies). */
export function showCaptions(client, captions) {
  client.addEventListener("transcript", (e) =>
    captions.add("caller", e.detail.text, { lang: e.detail.language }),
  );
  client.addEventListener("reply_text", (e) =>
    captions.add("agent", e.detail.text, {
      key: `turn-${e.detail.turn}`,
      lang: e.detail.language,
      source: e.detail.source ?? null,
    }),
  );
}

const DETAIL_ROWS = [
  ["fps", "Frames/s"],
  ["height", "Height px"],
  ["videoKbps", "Video kbit/s"],
  ["audioJitterMs", "Audio jitter ms"],
  ["audioDelayMs", "Audio buffer ms"],
  ["videoDelayMs", "Video buffer ms"],
  ["lossPct", "Loss %"],
  ["rttMs", "Round trip ms"],
];

/**
 * The bars of the connection-quality indicator: the server's quality rung (its `quality`
 * events, when it sends them) and the browser's own statistics, one verdict. Every figure
 * is also written to `data-*` attributes of the button so kiosks and tests can read them.
 */
export class QualityIndicator {
  constructor(button, details = null) {
    this.button = button;
    this.details = details;
    this.quality = null;
    this.stats = null;
    this.monitor = null;
    if (details) {
      button.addEventListener("click", () => {
        details.hidden = !details.hidden;
        button.setAttribute("aria-expanded", String(!details.hidden));
      });
    }
  }

  /** Follow `client`: its `quality` events and, once connected, its peer's statistics. */
  attach(client) {
    client.addEventListener("quality", (e) => {
      this.quality = e.detail;
      this.render();
    });
    client.addEventListener("connection", (e) => {
      if (e.detail.state === "connected" && client.pc) {
        this.monitor?.stop();
        this.monitor = new StatsMonitor(client.pc);
        this.monitor.addEventListener("stats", (s) => {
          this.stats = s.detail;
          this.render();
        });
        this.monitor.start();
      } else if (e.detail.state === "closed") {
        this.reset();
      }
    });
  }

  reset() {
    this.monitor?.stop();
    this.monitor = null;
    this.quality = null;
    this.stats = null;
    this.render();
  }

  render() {
    const { level, why } = rateConnection({ stats: this.stats, quality: this.quality });
    const b = this.button;
    b.dataset.level = level;
    const label = b.querySelector(".quality-label");
    if (label) label.textContent = LEVEL_LABELS[level];
    const rung = this.quality ? ` · ${this.quality.height}p ${this.quality.fps} fps` : "";
    b.setAttribute("aria-label", `Connection quality: ${LEVEL_LABELS[level]}${rung}`);
    b.title = why.length ? `Connection ${level}: ${why.join(", ")}` : `Connection ${level}`;
    for (const [key, value] of Object.entries(this.stats ?? {})) {
      if (value === null) delete b.dataset[key];
      else b.dataset[key] = String(value);
    }
    if (this.quality) b.dataset.rung = String(this.quality.rung);
    else delete b.dataset.rung;
    if (this.details) this._renderDetails();
  }

  _renderDetails() {
    const rows = [];
    const row = (name, value) => {
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = value === null || value === undefined ? "–" : String(value);
      rows.push(dt, dd);
    };
    if (this.quality) {
      row("Server quality", `rung ${this.quality.rung}: ${this.quality.height}p, ${this.quality.fps} fps, ${Math.round(this.quality.bitrate / 1000)} kbit/s`);
    } else {
      row("Server quality", "not reported");
    }
    for (const [key, name] of DETAIL_ROWS) row(name, this.stats?.[key]);
    this.details.replaceChildren(...rows);
  }
}

/** Show `indicator` exactly while `client` sends a live, unmuted microphone. */
export function showMicIndicator(client, indicator) {
  client.addEventListener("mic", (e) => {
    indicator.hidden = !e.detail.active;
    indicator.dataset.active = String(e.detail.active);
    indicator.title = e.detail.active ? `Microphone on: ${e.detail.label || "default"}` : "";
  });
}

/**
 * Mark the first frame of each new video stream with the User Timing API
 * (`performance.mark("avatar-first-frame")`), measured from `startMark` when it exists.
 */
export function markFirstFrame(video, startMark) {
  const mark = () => {
    performance.mark("avatar-first-frame");
    if (performance.getEntriesByName(startMark, "mark").length) {
      performance.measure("call-to-first-frame", startMark, "avatar-first-frame");
    }
    video.dataset.firstFrame = "true";
  };
  if (typeof video.requestVideoFrameCallback === "function") {
    video.requestVideoFrameCallback(() => mark());
  } else {
    video.addEventListener("loadeddata", mark, { once: true });
  }
}

const HANDOFF_TEXT = {
  en: {
    waiting: (wait) => `Connecting you to a person; average wait ${wait}.`,
    connected: "You are now talking with a member of our team.",
    returned: "You are back with the assistant.",
    timeout: "Nobody is free right now. We can call you back, or you can write to us by email.",
    wait: (s) => (s < 60 ? "under a minute" : `about ${Math.round(s / 60)} min`),
  },
  zh: {
    waiting: (wait) => `正在为您转接人工客服，平均等待${wait}。`,
    connected: "人工客服已接入。",
    returned: "已为您转回智能助手。",
    timeout: "目前没有空闲的客服。我们可以给您回电，您也可以发邮件联系我们。",
    wait: (s) => (s < 60 ? "不到一分钟" : `约${Math.round(s / 60)}分钟`),
  },
};

/** The caller's line for a server `handoff` event (in the event's language). */
export function handoffText({ state, wait_s: waitS = null, language = "en" }) {
  const text = HANDOFF_TEXT[language] ?? HANDOFF_TEXT.en;
  if (state === "waiting") return text.waiting(text.wait(waitS ?? 120));
  return text[state] ?? "";
}

// The kiosk experience, mountable anywhere: attract loop while nobody is there, a call on a
// tap (or a key), the call ends after a quiet spell, a privacy indicator while the mic is on.
// kiosk.html mounts it on the whole page; embed.js mounts it inside a web component.
//
//   const kiosk = new Kiosk(container, { baseUrl, avatar, language, idleMs, apiKey });
//   kiosk.addEventListener("state", (e) => ...);  // also: ready, phase, connection,
//   kiosk.start(); kiosk.end(); kiosk.destroy();  //  session, transcript, reply_text, handoff, mic,
//                                                  //  failure, ended
import { CallClient } from "./call.js";
import { SilenceWatch } from "./idle.js";
import {
  Captions,
  handoffText,
  markFirstFrame,
  QualityIndicator,
  showCaptions,
  showMicIndicator,
} from "./widgets.js";

export const KIOSK_MARKUP = `
<main class="kiosk" data-phase="attract">
  <video data-ref="video" class="avatar-video" autoplay playsinline aria-label="Avatar"></video>
  <section data-ref="attract" class="attract" aria-label="Start a conversation">
    <h1 data-ref="headline" class="headline"></h1>
    <p data-ref="attractLine" class="attract-line" aria-live="polite"></p>
    <button data-ref="start" type="button" class="start"></button>
    <p data-ref="privacyNote" class="privacy-note"></p>
  </section>
  <div data-ref="mic" class="mic-indicator" data-active="false" role="status" hidden>
    <span class="dot" aria-hidden="true"></span><span data-ref="micLabel" class="mic-label"></span>
  </div>
  <div data-ref="agentState" class="agent-state" hidden></div>
  <p data-ref="recorded" class="recorded-note" role="status" hidden>● This call is recorded</p>
  <button data-ref="quality" type="button" class="quality" data-level="unknown" aria-label="Connection quality" hidden>
    <span class="bars" aria-hidden="true"><i></i><i></i><i></i></span><span class="quality-label">–</span>
  </button>
  <section class="captions" aria-live="polite" aria-label="Captions"><ol data-ref="captions"></ol></section>
  <div data-ref="countdown" class="countdown" role="alert" hidden></div>
  <p data-ref="message" class="message" role="alert" hidden></p>
  <nav data-ref="controls" class="controls" hidden>
    <button data-ref="interrupt" type="button"></button>
    <button data-ref="end" type="button" class="danger"></button>
  </nav>
</main>`;

const TEXT = {
  en: {
    headline: "Hi! Need help?",
    start: "Tap to talk",
    privacy: "The microphone is on only during a conversation.",
    mic: "Microphone on",
    names: { caller: "You", agent: "Assistant" },
    stop: "Stop",
    end: "End",
    lines: [
      "Ask me about opening hours",
      "Ask me how to return an item",
      "Ask me where your order is",
      "Ask me about payment options",
    ],
    states: { listening: "Listening", thinking: "Thinking…", speaking: "Speaking" },
    stillThere: (s) => `Still there? Ending in ${s} s. Tap to continue.`,
    goodbye: "Thank you, goodbye!",
    lost: "Sorry, the connection was lost.",
    reconnecting: "Connection lost. Reconnecting…",
    tapForSound: "Tap the screen to hear the assistant.",
  },
  zh: {
    headline: "您好！需要帮助吗？",
    start: "轻触开始对话",
    privacy: "仅在对话期间开启麦克风。",
    mic: "麦克风已开启",
    names: { caller: "您", agent: "客服" },
    stop: "停止",
    end: "结束",
    lines: ["问我营业时间", "问我如何退货", "问我订单在哪里", "问我支付方式"],
    states: { listening: "正在聆听", thinking: "思考中…", speaking: "正在回答" },
    stillThere: (s) => `还在吗？${s} 秒后结束，轻触继续。`,
    goodbye: "谢谢，再见！",
    lost: "抱歉，连接已断开。",
    reconnecting: "连接已断开，正在重新连接…",
    tapForSound: "轻触屏幕即可听到声音。",
  },
};
const ATTRACT_PERIOD_MS = 3000;
const BACK_TO_ATTRACT_MS = 4000;

/** One kiosk mounted in `container` (an element or a shadow root). */
export class Kiosk extends EventTarget {
  constructor(
    container,
    {
      baseUrl = "",
      avatar = null,
      language = "en",
      idleMs = 20000,
      apiKey = null,
      fullscreen = false,
      keyTarget = null, // where Enter / Space start a call (default: the kiosk itself)
    } = {},
  ) {
    super();
    if (!(idleMs >= 5000)) throw new RangeError(`idleMs must be at least 5000, got ${idleMs}`);
    this.options = { baseUrl, avatar, language: language === "zh" ? "zh" : "en", idleMs, apiKey, fullscreen };
    this.text = TEXT[this.options.language];
    const holder = document.createElement("div");
    holder.innerHTML = KIOSK_MARKUP.trim();
    this.root = holder.firstElementChild;
    this.root.lang = this.options.language;
    container.append(this.root);
    this.ui = {};
    for (const el of this.root.querySelectorAll("[data-ref]")) this.ui[el.dataset.ref] = el;
    this.ui.headline.textContent = this.text.headline;
    this.ui.start.textContent = this.text.start;
    this.ui.privacyNote.textContent = this.text.privacy;
    this.ui.micLabel.textContent = this.text.mic;
    this.ui.interrupt.textContent = this.text.stop;
    this.ui.end.textContent = this.text.end;
    this.captions = new Captions(this.ui.captions, { max: 6, names: this.text.names });
    this.quality = new QualityIndicator(this.ui.quality);
    this.watch = new SilenceWatch({ idleMs, warnMs: Math.min(5000, idleMs / 2) });
    this.call = null;
    this._timers = { attract: null, watch: null, back: null };
    this._reconnected = false;
    this._waitingForPerson = false; // a quiet wait in the handoff queue never ends the call
    this._bindInput(keyTarget ?? this.root);
    this._attract();
  }

  _emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  get phase() {
    return this.root.dataset.phase;
  }

  _setPhase(phase) {
    this.root.dataset.phase = phase; // attract | connecting | call | ending
    this.ui.controls.hidden = phase !== "call";
    this.ui.quality.hidden = phase !== "call";
    this._emit("phase", { phase });
  }

  _message(text) {
    this.ui.message.textContent = text;
    this.ui.message.hidden = !text;
  }

  _bindInput(keyTarget) {
    const { ui } = this;
    ui.attract.addEventListener("click", () => this.start());
    ui.start.addEventListener("click", (e) => {
      e.stopPropagation();
      this.start();
    });
    this.root.tabIndex = 0;
    keyTarget.addEventListener("keydown", (e) => {
      if (this.phase === "attract" && (e.key === "Enter" || e.key === " ")) {
        e.preventDefault();
        this.start();
      } else if (this.call?.state === "connected") {
        this.watch.activity(performance.now());
      }
    });
    this.root.addEventListener("pointerdown", () => {
      if (this.call?.state === "connected") {
        this.watch.activity(performance.now());
        ui.video.play().catch(() => {});
      }
    });
    ui.interrupt.addEventListener("click", () => this.call?.interrupt());
    ui.end.addEventListener("click", () => this.end(this.text.goodbye));
  }

  _attract() {
    const t = this._timers;
    clearTimeout(t.back);
    clearInterval(t.watch);
    t.watch = null;
    this.captions.clear(); // nothing of the last person's conversation stays on screen
    this.ui.countdown.hidden = true;
    this.ui.agentState.hidden = true;
    this.ui.video.srcObject = null;
    this._setPhase("attract");
    let i = 0;
    this.ui.attractLine.textContent = this.text.lines[0];
    clearInterval(t.attract);
    t.attract = setInterval(() => {
      i = (i + 1) % this.text.lines.length;
      this.ui.attractLine.textContent = this.text.lines[i];
    }, ATTRACT_PERIOD_MS);
  }

  _attractSoon(message) {
    if (message) this._message(message);
    clearTimeout(this._timers.back);
    this._timers.back = setTimeout(() => {
      this._message("");
      this._attract();
    }, BACK_TO_ATTRACT_MS);
  }

  _tick() {
    if (this.call?.state !== "connected") return;
    if (this._waitingForPerson) this.watch.activity(performance.now());
    const { phase, remainingMs } = this.watch.check(performance.now());
    if (phase === "end") {
      this.end(this.text.goodbye);
    } else if (phase === "warn") {
      this.ui.countdown.textContent = this.text.stillThere(Math.ceil(remainingMs / 1000));
      this.ui.countdown.hidden = false;
    } else {
      this.ui.countdown.hidden = true;
    }
  }

  _wire(client) {
    const { ui } = this;
    const active = () => this.watch.activity(performance.now());
    client.addEventListener("connection", (e) => {
      this._emit("connection", { state: e.detail.state });
      if (e.detail.state === "connected") {
        this._setPhase("call");
        active();
        clearInterval(this._timers.watch);
        this._timers.watch = setInterval(() => this._tick(), 250);
      } else if (e.detail.state === "closed" && this.phase !== "attract") {
        clearInterval(this._timers.watch);
        this._timers.watch = null;
        ui.video.srcObject = null;
      }
    });
    client.addEventListener("media", (e) => {
      if (ui.video.srcObject !== e.detail.stream) {
        ui.video.srcObject = e.detail.stream;
        markFirstFrame(ui.video, "kiosk-start");
      }
      ui.video.play().catch((err) => {
        if (err?.name === "NotAllowedError") this._message(this.text.tapForSound); // autoplay blocked
      });
    });
    client.addEventListener("state", (e) => {
      const { state } = e.detail;
      const label = this.text.states[state];
      ui.agentState.hidden = !label;
      ui.agentState.textContent = label ?? "";
      ui.agentState.dataset.state = state;
      this.watch.setBusy(state === "thinking" || state === "speaking", performance.now());
      if (state === "listening") this._reconnected = false;
      this._emit("state", { state });
    });
    for (const type of ["speech", "transcript", "reply_text"]) client.addEventListener(type, active);
    client.addEventListener("transcript", (e) => this._emit("transcript", { text: e.detail.text }));
    client.addEventListener("reply_text", (e) =>
      this._emit("reply_text", { text: e.detail.text, turn: e.detail.turn }),
    );
    client.addEventListener("mic", (e) => this._emit("mic", { active: e.detail.active }));
    client.addEventListener("session", (e) => {
      ui.recorded.hidden = !e.detail.recorded;
      this._emit("session", { session: e.detail.session, recorded: e.detail.recorded });
    });
    client.addEventListener("handoff", (e) => {
      this._waitingForPerson = e.detail.state === "waiting";
      this._message(handoffText(e.detail));
      this._emit("handoff", { state: e.detail.state, waitS: e.detail.wait_s ?? null });
    });
    client.addEventListener("failure", (e) => this._onFailure(e.detail));
    showCaptions(client, this.captions);
    showMicIndicator(client, ui.mic);
    this.quality.attach(client);
  }

  _onFailure({ kind, message }) {
    this._emit("failure", { kind, message });
    if (kind === "lost" && !this._reconnected && this.call) {
      this._reconnected = true;
      this._message(this.text.reconnecting);
      this._setPhase("connecting");
      this.call.reconnect().then(
        () => this._message(""),
        () => this._attractSoon(this.text.lost),
      );
    } else if (kind === "lost" || kind === "ended") {
      this._attractSoon(kind === "ended" ? this.text.goodbye : this.text.lost);
    } else {
      this._attractSoon(message);
    }
  }

  /** Start a call (from the attract screen; otherwise nothing happens). */
  async start() {
    if (this.phase !== "attract") return;
    clearInterval(this._timers.attract);
    this._message("");
    this._setPhase("connecting");
    const el = document.documentElement;
    if (this.options.fullscreen && document.fullscreenEnabled && !document.fullscreenElement) {
      el.requestFullscreen().catch(() => {});
    }
    performance.clearMarks("kiosk-start");
    performance.mark("kiosk-start");
    const { baseUrl, apiKey, avatar, language } = this.options;
    this.call = new CallClient({ baseUrl, apiKey });
    this._reconnected = false;
    this._wire(this.call);
    try {
      await this.call.start({ avatar, language });
    } catch {
      // the failure event has shown the reason and scheduled the attract loop
    }
  }

  /** End the call (showing `goodbye`, if any) and go back to the attract loop. */
  end(goodbye = "") {
    if (!this.call || this.phase === "attract") return;
    this._setPhase("ending");
    this.call.hangUp();
    this._emit("ended");
    this._attractSoon(goodbye);
  }

  /** Hang up, stop every timer and remove the kiosk from its container. */
  destroy() {
    this.call?.hangUp();
    for (const timer of Object.values(this._timers)) {
      clearInterval(timer);
      clearTimeout(timer);
    }
    this.quality.reset();
    this.root.remove();
  }
}

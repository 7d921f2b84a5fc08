// Kiosk page: attract loop while nobody is there, a call on a tap (or a key), the call ends
// after a quiet spell, a privacy indicator while the microphone is on. Also the page the
// embed snippet (embed.js) frames; then it tells the host page what happens (postMessage).
//
// URL: /static/kiosk.html?avatar=NAME&lang=en|zh&idle=SECONDS&embed=1&host=ORIGIN#key=KEY
// (the key rides in the fragment, which is never sent to any server).
import { CallClient } from "./call.js";
import { SilenceWatch } from "./idle.js";
import { Captions, markFirstFrame, QualityIndicator, showCaptions, showMicIndicator } from "./widgets.js";

const $ = (id) => document.getElementById(id);
const ui = {
  kiosk: $("kiosk"),
  video: $("avatar-video"),
  attract: $("attract"),
  attractLine: $("attract-line"),
  start: $("start"),
  mic: $("mic-indicator"),
  agentState: $("agent-state"),
  quality: $("quality"),
  captions: $("captions"),
  countdown: $("countdown"),
  message: $("message"),
  controls: $("controls"),
  interrupt: $("interrupt"),
  end: $("end"),
};

const params = new URLSearchParams(window.location.search);
const fragment = new URLSearchParams(window.location.hash.slice(1));
const OPTIONS = Object.freeze({
  avatar: params.get("avatar") || null,
  language: params.get("lang") === "zh" ? "zh" : "en",
  idleMs: 1000 * Math.min(600, Math.max(5, Number(params.get("idle")) || 20)),
  embedded: params.get("embed") === "1",
  host: hostOrigin(params.get("host")),
  apiKey: fragment.get("key") || params.get("key") || null,
});
const ATTRACT_LINES = {
  en: [
    "Ask me about opening hours",
    "Ask me how to return an item",
    "Ask me where your order is",
    "Ask me about payment options",
  ],
  zh: ["问我营业时间", "问我如何退货", "问我订单在哪里", "问我支付方式"],
};
const AGENT_LABELS = {
  en: { listening: "Listening", thinking: "Thinking…", speaking: "Speaking" },
  zh: { listening: "正在聆听", thinking: "思考中…", speaking: "正在回答" },
};
const ATTRACT_PERIOD_MS = 3000;
const BACK_TO_ATTRACT_MS = 4000;

function hostOrigin(raw) {
  try {
    return raw ? new URL(raw).origin : null;
  } catch {
    return null;
  }
}

/** Tell the embedding page (only the origin it named) what happens in the call. */
function tellHost(type, detail = {}) {
  if (!OPTIONS.embedded || !OPTIONS.host || window.parent === window) return;
  window.parent.postMessage({ source: "avatar-rtc", type, detail }, OPTIONS.host);
}

const captions = new Captions(ui.captions, { max: 6 });
const quality = new QualityIndicator(ui.quality);
const watch = new SilenceWatch({ idleMs: OPTIONS.idleMs, warnMs: Math.min(5000, OPTIONS.idleMs / 2) });
let call = null;
let attractTimer = null;
let watchTimer = null;
let backTimer = null;
let reconnected = false;

function setPhase(phase) {
  ui.kiosk.dataset.phase = phase; // attract | connecting | call | ending
  ui.controls.hidden = phase !== "call";
  ui.quality.hidden = phase !== "call";
  tellHost("phase", { phase });
}

function showMessage(text) {
  ui.message.textContent = text;
  ui.message.hidden = !text;
}

function startAttract() {
  clearTimeout(backTimer);
  clearInterval(watchTimer);
  watchTimer = null;
  captions.clear(); // nothing of the last person's conversation stays on screen
  ui.countdown.hidden = true;
  ui.agentState.hidden = true;
  ui.video.srcObject = null;
  setPhase("attract");
  const lines = ATTRACT_LINES[OPTIONS.language];
  let i = 0;
  ui.attractLine.textContent = lines[0];
  clearInterval(attractTimer);
  attractTimer = setInterval(() => {
    i = (i + 1) % lines.length;
    ui.attractLine.textContent = lines[i];
  }, ATTRACT_PERIOD_MS);
}

function backToAttractSoon(message) {
  if (message) showMessage(message);
  clearTimeout(backTimer);
  backTimer = setTimeout(() => {
    showMessage("");
    startAttract();
  }, BACK_TO_ATTRACT_MS);
}

function onWatchTick() {
  if (!call || call.state !== "connected") return;
  const { phase, remainingMs } = watch.check(performance.now());
  if (phase === "end") {
    endCall("Thank you, goodbye!");
  } else if (phase === "warn") {
    const s = Math.ceil(remainingMs / 1000);
    ui.countdown.textContent =
      OPTIONS.language === "zh" ? `还在吗？${s} 秒后结束，轻触继续` : `Still there? Ending in ${s} s. Tap to continue.`;
    ui.countdown.hidden = false;
  } else {
    ui.countdown.hidden = true;
  }
}

function wire(client) {
  const active = () => watch.activity(performance.now());
  client.addEventListener("connection", (e) => {
    tellHost("connection", { state: e.detail.state });
    if (e.detail.state === "connected") {
      setPhase("call");
      active();
      clearInterval(watchTimer);
      watchTimer = setInterval(onWatchTick, 250);
    } else if (e.detail.state === "closed" && ui.kiosk.dataset.phase !== "attract") {
      clearInterval(watchTimer);
      watchTimer = null;
      ui.video.srcObject = null;
    }
  });
  client.addEventListener("media", (e) => {
    if (ui.video.srcObject !== e.detail.stream) {
      ui.video.srcObject = e.detail.stream;
      markFirstFrame(ui.video, "kiosk-start");
    }
    ui.video.play().catch((err) => {
      console.warn("video.play():", err?.name, err?.message);
      if (err?.name === "NotAllowedError") showMessage("Tap the screen to hear the assistant."); // autoplay blocked
    });
  });
  client.addEventListener("state", (e) => {
    const { state } = e.detail;
    const label = AGENT_LABELS[OPTIONS.language][state];
    ui.agentState.hidden = !label;
    ui.agentState.textContent = label ?? "";
    ui.agentState.dataset.state = state;
    watch.setBusy(state === "thinking" || state === "speaking", performance.now());
    if (state === "listening") reconnected = false;
    tellHost("state", { state });
  });
  for (const type of ["speech", "transcript", "reply_text"]) client.addEventListener(type, active);
  client.addEventListener("transcript", (e) => tellHost("transcript", { text: e.detail.text }));
  client.addEventListener("reply_text", (e) =>
    tellHost("reply_text", { text: e.detail.text, turn: e.detail.turn }),
  );
  client.addEventListener("mic", (e) => tellHost("mic", { active: e.detail.active }));
  client.addEventListener("failure", (e) => onFailure(e.detail));
  showCaptions(client, captions);
  showMicIndicator(client, ui.mic);
  quality.attach(client);
}

function onFailure({ kind, message }) {
  tellHost("failure", { kind, message });
  if (kind === "lost" && !reconnected && call) {
    reconnected = true;
    showMessage("Connection lost. Reconnecting…");
    setPhase("connecting");
    call.reconnect().then(
      () => showMessage(""),
      () => backToAttractSoon("Sorry, the connection was lost."),
    );
  } else if (kind === "lost" || kind === "ended") {
    backToAttractSoon(kind === "ended" ? "Thank you, goodbye!" : "Sorry, the connection was lost.");
  } else {
    backToAttractSoon(message);
  }
}

async function startCall() {
  if (ui.kiosk.dataset.phase !== "attract") return;
  clearInterval(attractTimer);
  showMessage("");
  setPhase("connecting");
  if (!OPTIONS.embedded && document.fullscreenEnabled && !document.fullscreenElement) {
    document.documentElement.requestFullscreen().catch(() => {});
  }
  performance.clearMarks();
  performance.clearMeasures();
  performance.mark("kiosk-start");
  call = new CallClient({ apiKey: OPTIONS.apiKey });
  window.avatarCall = call; // for diagnostics and browser automation
  reconnected = false;
  wire(call);
  try {
    await call.start({ avatar: OPTIONS.avatar, language: OPTIONS.language });
  } catch {
    // the failure event has shown the reason and scheduled the attract loop
  }
}

function endCall(goodbye) {
  if (!call) return;
  setPhase("ending");
  call.hangUp();
  tellHost("ended", {});
  backToAttractSoon(goodbye);
}

ui.attract.addEventListener("click", startCall);
ui.start.addEventListener("click", (e) => {
  e.stopPropagation();
  startCall();
});
document.addEventListener("keydown", (e) => {
  if (ui.kiosk.dataset.phase === "attract" && (e.key === "Enter" || e.key === " ")) {
    e.preventDefault();
    startCall();
  } else if (call?.state === "connected") {
    watch.activity(performance.now());
  }
});
ui.kiosk.addEventListener("pointerdown", () => {
  if (call?.state === "connected") {
    watch.activity(performance.now());
    ui.video.play().catch(() => {});
  }
});
ui.interrupt.addEventListener("click", () => call?.interrupt());
ui.end.addEventListener("click", () => endCall("Thank you, goodbye!"));
window.addEventListener("pagehide", () => call?.hangUp());
window.addEventListener("message", (e) => {
  // The host page may start or end the call (e.g. a presence sensor or its own button).
  if (!OPTIONS.host || e.origin !== OPTIONS.host || e.data?.source !== "avatar-rtc-host") return;
  if (e.data.type === "start") startCall();
  else if (e.data.type === "end") endCall("");
});

document.documentElement.lang = OPTIONS.language;
startAttract();
tellHost("ready", { avatar: OPTIONS.avatar, language: OPTIONS.language });

// DOM of the call page: settings, buttons, captions, indicators. The wire logic is in call.js.
import { CallClient } from "./call.js";
import {
  Captions,
  handoffText,
  markFirstFrame,
  QualityIndicator,
  showCaptions,
  showMicIndicator,
} from "./widgets.js";

const $ = (id) => document.getElementById(id);
const ui = {
  avatar: $("avatar"),
  language: $("language"),
  mic: $("mic"),
  connection: $("connection"),
  quality: $("quality"),
  qualityDetails: $("quality-details"),
  video: $("avatar-video"),
  agentState: $("agent-state"),
  micIndicator: $("mic-indicator"),
  recorded: $("recorded"),
  message: $("message"),
  messageText: $("message-text"),
  reconnect: $("reconnect"),
  captions: $("captions"),
  form: $("type-form"),
  text: $("type-text"),
  send: $("send"),
  call: $("call"),
  interrupt: $("interrupt"),
  mute: $("mute"),
  hangup: $("hangup"),
};

const CONNECTION_LABELS = {
  idle: "Not connected",
  connecting: "Connecting…",
  connected: "Connected",
  closed: "Call ended",
};
const AGENT_LABELS = { listening: "Listening", thinking: "Thinking…", speaking: "Speaking" };
const AUTO_RECONNECT_DELAY_MS = 1500;
const HANDOFF_NOTE_MS = 6000; // "connected" / "returned" notes fade after this
const AUTO_RECONNECT_EVERY_MS = 30000; // lost again sooner: offer the button instead
const params = new URLSearchParams(window.location.search);
const fragment = new URLSearchParams(window.location.hash.slice(1));
const captions = new Captions(ui.captions);
const quality = new QualityIndicator(ui.quality, ui.qualityDetails);

let call = null;
let lastAutoReconnect = -Infinity;

function showMessage(text, { reconnect = false } = {}) {
  ui.messageText.textContent = text;
  ui.message.hidden = !text;
  ui.reconnect.hidden = !reconnect;
}

function setInCall(inCall) {
  ui.call.disabled = inCall;
  ui.avatar.disabled = inCall;
  ui.language.disabled = inCall;
  for (const el of [ui.hangup, ui.interrupt, ui.mute, ui.text, ui.send]) el.disabled = !inCall;
  if (!inCall) {
    ui.agentState.hidden = true;
    ui.mute.setAttribute("aria-pressed", "false");
    ui.mute.textContent = "Mute";
  }
}

async function loadAvatars() {
  const wanted = params.get("avatar");
  try {
    const resp = await fetch("/avatars");
    if (!resp.ok) throw new Error(String(resp.status));
    const { avatars = [], default: fallback = null } = await resp.json();
    ui.avatar.replaceChildren(...avatars.map((name) => new Option(name, name)));
    const pick = avatars.includes(wanted) ? wanted : fallback;
    if (pick) ui.avatar.value = pick;
    if (wanted && !avatars.includes(wanted)) showMessage(`Unknown avatar "${wanted}"; using ${pick}.`);
  } catch (err) {
    if (wanted) ui.avatar.replaceChildren(new Option(wanted, wanted));
    console.warn("could not list avatars", err);
  }
}

async function loadMicrophones() {
  if (!navigator.mediaDevices?.enumerateDevices) {
    ui.mic.disabled = true;
    return;
  }
  const chosen = ui.mic.value;
  const devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "audioinput");
  const options = [new Option("default", "")];
  devices.forEach((d, i) => {
    if (d.deviceId && d.deviceId !== "default") options.push(new Option(d.label || `Microphone ${i + 1}`, d.deviceId));
  });
  ui.mic.replaceChildren(...options);
  if ([...ui.mic.options].some((o) => o.value === chosen)) ui.mic.value = chosen;
}

function onFailure(detail) {
  const { kind, message } = detail;
  if (kind === "lost") {
    if (performance.now() - lastAutoReconnect > AUTO_RECONNECT_EVERY_MS) {
      lastAutoReconnect = performance.now();
      showMessage(`${message} Reconnecting…`);
      setTimeout(() => reconnect(), AUTO_RECONNECT_DELAY_MS);
    } else {
      showMessage(message, { reconnect: true });
    }
  } else if (kind === "mic-denied" || kind === "no-mic") {
    showMessage(message); // the call goes on; typing works
  } else {
    showMessage(message, { reconnect: kind === "network" && call?.session !== null });
  }
}

function wire(client) {
  client.addEventListener("connection", (e) => {
    const { state } = e.detail;
    ui.connection.dataset.state = state;
    ui.connection.textContent = CONNECTION_LABELS[state] ?? state;
    if (state === "connected") {
      loadMicrophones().catch(() => {});
      if (!ui.message.hidden && !ui.reconnect.hidden) showMessage("");
    } else if (state === "closed") {
      setInCall(false);
      ui.video.srcObject = null;
      delete ui.video.dataset.firstFrame;
    }
  });
  client.addEventListener("media", (e) => {
    if (ui.video.srcObject !== e.detail.stream) {
      ui.video.srcObject = e.detail.stream;
      markFirstFrame(ui.video, "call-click");
    }
    ui.video.play().catch((err) => {
      console.warn("video.play():", err?.name, err?.message);
      if (err?.name === "NotAllowedError") showMessage("Tap the video to hear the agent."); // autoplay blocked
    });
  });
  client.addEventListener("failure", (e) => onFailure(e.detail));
  client.addEventListener("state", (e) => {
    const { state } = e.detail;
    ui.agentState.hidden = !AGENT_LABELS[state];
    ui.agentState.textContent = AGENT_LABELS[state] ?? "";
    ui.agentState.dataset.state = state;
  });
  client.addEventListener("error", (e) => console.warn("server:", e.detail.reason));
  client.addEventListener("session", (e) => {
    ui.recorded.hidden = !e.detail.recorded; // the caller is told the call is recorded
  });
  client.addEventListener("handoff", (e) => {
    const text = handoffText(e.detail);
    showMessage(text);
    if (e.detail.state === "connected" || e.detail.state === "returned") {
      setTimeout(() => ui.messageText.textContent === text && showMessage(""), HANDOFF_NOTE_MS);
    }
  });
  showCaptions(client, captions);
  showMicIndicator(client, ui.micIndicator);
  quality.attach(client);
}

async function startCall() {
  showMessage("");
  performance.clearMarks();
  performance.clearMeasures();
  performance.mark("call-click");
  call = new CallClient({ apiKey: fragment.get("key") }); // #key=…: never sent to a server
  window.avatarCall = call; // for diagnostics from the console and browser automation
  wire(call);
  setInCall(true);
  lastAutoReconnect = -Infinity;
  try {
    await call.start({
      avatar: ui.avatar.value || null,
      language: ui.language.value,
      micDeviceId: ui.mic.value || null,
      allowNoMic: true,
    });
  } catch {
    setInCall(false); // the failure event has shown the reason
  }
}

async function reconnect() {
  if (!call) return startCall();
  showMessage("Reconnecting…");
  setInCall(true);
  try {
    await call.reconnect();
    showMessage("");
  } catch {
    setInCall(false);
  }
}

ui.call.addEventListener("click", startCall);
ui.reconnect.addEventListener("click", () => reconnect());
ui.hangup.addEventListener("click", () => call?.hangUp());
ui.interrupt.addEventListener("click", () => call?.interrupt());
ui.mute.addEventListener("click", () => {
  const muted = ui.mute.getAttribute("aria-pressed") !== "true";
  call?.setMuted(muted);
  ui.mute.setAttribute("aria-pressed", String(muted));
  ui.mute.textContent = muted ? "Unmute" : "Mute";
});
ui.mic.addEventListener("change", () => {
  call?.switchMic(ui.mic.value || null).catch((err) => showMessage(`Cannot use that microphone: ${err?.message ?? err}`));
});
ui.form.addEventListener("submit", (e) => {
  e.preventDefault();
  if (call?.sendText(ui.text.value)) ui.text.value = "";
});
ui.video.addEventListener("click", () => ui.video.play().catch(() => {}));
window.addEventListener("pagehide", () => call?.hangUp());
navigator.mediaDevices?.addEventListener?.("devicechange", () => loadMicrophones().catch(() => {}));

if (params.get("lang") === "zh") ui.language.value = "zh";
setInCall(false);
quality.render();
loadAvatars();
loadMicrophones().catch(() => {});

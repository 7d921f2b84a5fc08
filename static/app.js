// DOM of the call page: buttons, captions, avatar chooser. The wire logic is in call.js.
import { CallClient } from "./call.js";

const $ = (id) => document.getElementById(id);
const ui = {
  avatar: $("avatar"),
  connection: $("connection"),
  video: $("avatar-video"),
  agentState: $("agent-state"),
  message: $("message"),
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
const MAX_CAPTIONS = 50;

let call = null;

function showMessage(text) {
  ui.message.textContent = text;
  ui.message.hidden = !text;
}

function setInCall(inCall) {
  ui.call.disabled = inCall;
  ui.avatar.disabled = inCall;
  for (const el of [ui.hangup, ui.interrupt, ui.mute, ui.text, ui.send]) el.disabled = !inCall;
  if (!inCall) {
    ui.agentState.hidden = true;
    ui.mute.setAttribute("aria-pressed", "false");
    ui.mute.textContent = "Mute";
  }
}

function scrollCaptions() {
  const box = ui.captions.parentElement;
  box.scrollTop = box.scrollHeight;
}

function addCaption(who, text, key = null) {
  if (key) {
    const existing = ui.captions.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (existing) {
      existing.querySelector(".text").textContent += ` ${text}`;
      scrollCaptions();
      return;
    }
  }
  const li = document.createElement("li");
  li.className = `caption ${who}`;
  if (key) li.dataset.key = key;
  const label = document.createElement("span");
  label.className = "who";
  label.textContent = who === "caller" ? "You" : "Agent";
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  li.append(label, body);
  ui.captions.append(li);
  while (ui.captions.children.length > MAX_CAPTIONS) ui.captions.firstElementChild.remove();
  scrollCaptions();
}

async function loadAvatars() {
  const wanted = new URLSearchParams(window.location.search).get("avatar");
  try {
    const resp = await fetch("/avatars");
    if (!resp.ok) throw new Error(String(resp.status));
    const { avatars = [], default: fallback = null } = await resp.json();
    ui.avatar.replaceChildren(
      ...avatars.map((name) => {
        const opt = document.createElement("option");
        opt.value = name;
        opt.textContent = name;
        return opt;
      }),
    );
    const pick = avatars.includes(wanted) ? wanted : fallback;
    if (pick) ui.avatar.value = pick;
    if (wanted && !avatars.includes(wanted)) showMessage(`Unknown avatar "${wanted}"; using ${pick}.`);
  } catch (err) {
    if (wanted) ui.avatar.replaceChildren(new Option(wanted, wanted));
    console.warn("could not list avatars", err);
  }
}

function wire(client) {
  client.addEventListener("connection", (e) => {
    const { state } = e.detail;
    ui.connection.dataset.state = state;
    ui.connection.textContent = CONNECTION_LABELS[state] ?? state;
    if (state === "closed") {
      setInCall(false);
      ui.video.srcObject = null;
    }
  });
  client.addEventListener("media", (e) => {
    if (ui.video.srcObject !== e.detail.stream) ui.video.srcObject = e.detail.stream;
    ui.video.play().catch(() => showMessage("Tap the video to hear the agent."));
  });
  client.addEventListener("failure", (e) => showMessage(e.detail.message));
  client.addEventListener("state", (e) => {
    const { state } = e.detail;
    ui.agentState.hidden = !AGENT_LABELS[state];
    ui.agentState.textContent = AGENT_LABELS[state] ?? "";
    ui.agentState.dataset.state = state;
  });
  client.addEventListener("transcript", (e) => addCaption("caller", e.detail.text));
  client.addEventListener("reply_text", (e) =>
    addCaption("agent", e.detail.text, `turn-${e.detail.turn}`),
  );
  client.addEventListener("error", (e) => console.warn("server:", e.detail.reason));
}

ui.call.addEventListener("click", async () => {
  showMessage("");
  call = new CallClient();
  wire(call);
  setInCall(true);
  ui.call.disabled = true;
  try {
    await call.start({ avatar: ui.avatar.value || null, allowNoMic: true });
  } catch {
    setInCall(false); // the failure event has shown the reason
  }
});

ui.hangup.addEventListener("click", () => call?.hangUp());
ui.interrupt.addEventListener("click", () => call?.interrupt());
ui.mute.addEventListener("click", () => {
  const muted = ui.mute.getAttribute("aria-pressed") !== "true";
  call?.setMuted(muted);
  ui.mute.setAttribute("aria-pressed", String(muted));
  ui.mute.textContent = muted ? "Unmute" : "Mute";
});
ui.form.addEventListener("submit", (e) => {
  e.preventDefault();
  if (call?.sendText(ui.text.value)) ui.text.value = "";
});
ui.video.addEventListener("click", () => ui.video.play().catch(() => {}));
window.addEventListener("pagehide", () => call?.hangUp());

setInCall(false);
loadAvatars();

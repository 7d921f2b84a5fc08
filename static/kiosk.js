// The kiosk page: the Kiosk of kiosk-app.js on the whole screen. Also the page embed.js
// frames in its iframe mode; then it tells the host page what happens (postMessage).
//
// URL: /static/kiosk.html?avatar=NAME&lang=en|zh&idle=SECONDS&embed=1&host=ORIGIN#key=KEY
// (the key rides in the fragment, which is never sent to any server).
import { Kiosk } from "./kiosk-app.js";

const EVENTS = ["phase", "connection", "session", "state", "transcript", "reply_text", "mic", "failure", "ended"];
const params = new URLSearchParams(window.location.search);
const fragment = new URLSearchParams(window.location.hash.slice(1));
const embedded = params.get("embed") === "1";
const host = hostOrigin(params.get("host"));

function hostOrigin(raw) {
  try {
    return raw ? new URL(raw).origin : null;
  } catch {
    return null;
  }
}

/** Tell the embedding page (only the origin it named) what happens in the call. */
function tellHost(type, detail = {}) {
  if (!embedded || !host || window.parent === window) return;
  window.parent.postMessage({ source: "avatar-rtc", type, detail }, host);
}

const kiosk = new Kiosk(document.body, {
  avatar: params.get("avatar") || null,
  language: params.get("lang") === "zh" ? "zh" : "en",
  idleMs: 1000 * Math.min(600, Math.max(5, Number(params.get("idle")) || 20)),
  apiKey: fragment.get("key") || null,
  fullscreen: !embedded,
  keyTarget: document,
});
document.documentElement.lang = kiosk.options.language;
for (const type of EVENTS) kiosk.addEventListener(type, (e) => tellHost(type, e.detail));
kiosk.addEventListener("connection", () => {
  window.avatarCall = kiosk.call; // for diagnostics and browser automation
});
window.addEventListener("pagehide", () => kiosk.call?.hangUp());
window.addEventListener("message", (e) => {
  // The host page may start or end the call (e.g. a presence sensor or its own button).
  if (!host || e.origin !== host || e.data?.source !== "avatar-rtc-host") return;
  if (e.data.type === "start") kiosk.start();
  else if (e.data.type === "end") kiosk.end();
});
tellHost("ready", { avatar: kiosk.options.avatar, language: kiosk.options.language });

// Put the avatar into any web page with one tag:
//
//   <script src="https://AVATAR-HOST/static/embed.js" data-key="PUBLIC_KEY"
//           data-avatar="astronaut" data-lang="en" data-idle="30"
//           data-target="#help-box" data-mode="inline"></script>
//
// It defines the <avatar-rtc-agent> web component and puts one into `data-target`, or right
// after the script tag. The host page sizes it: it fills `data-target`; otherwise it is
// `width: 100%` with a 3:4 shape, and any CSS on `avatar-rtc-agent` overrides that.
//
// Two modes, both needing the host page's origin on the server's allow-list (an API key's
// `origins`, or `access.allowed_origins` for keyless loopback setups):
// - "inline" (default): the kiosk (kiosk-app.js) runs in the element's shadow root and calls
//   the server from the host page's origin, so an origin-bound key is checked against the
//   host page (the browser vouches for the Origin header); the microphone permission is the
//   host page's.
// - "frame": an iframe of the kiosk page on the avatar host (the host page can't touch it;
//   the microphone permission is the avatar host's; the server's frame-ancestors policy
//   decides who may frame it). The key travels in the URL fragment, never sent to a server.
//
// The element re-dispatches what happens as DOM events "avatar-rtc:<type>" (ready, phase,
// connection, state, transcript, reply_text, mic, failure, ended) and has start() and end().
//
// A classic script on purpose (not a module): only classic scripts see
// document.currentScript, which is how it reads its own data-* attributes and origin.
(() => {
  const script = document.currentScript;
  const TAG = "avatar-rtc-agent";
  const EVENTS = ["phase", "connection", "state", "transcript", "reply_text", "handoff", "mic", "failure", "ended"];
  const ATTRIBUTES = ["avatar", "lang", "idle", "key", "base", "mode"];
  const scriptUrl = new URL(script?.src || "", window.location.href);
  const defaultBase = new URL("..", scriptUrl).href.replace(/\/$/, ""); // .../static/embed.js → ...
  const HOST_CSS = `
    :host { display: block; position: relative; width: 100%; aspect-ratio: 3 / 4;
            min-height: 240px; background: #000; overflow: hidden; contain: content; }
    :host([data-fill]) { height: 100%; aspect-ratio: auto; }
    iframe { position: absolute; inset: 0; width: 100%; height: 100%; border: 0; }`;

  if (!customElements.get(TAG)) {
    class AvatarRtcAgent extends HTMLElement {
      static get observedAttributes() {
        return ATTRIBUTES;
      }

      constructor() {
        super();
        this._root = this.attachShadow({ mode: "open" });
        this._frame = null;
        this.kiosk = null; // inline mode: the Kiosk (kiosk-app.js)
        this._mounted = null; // the configuration now shown
        this._onMessage = (e) => this._relay(e);
      }

      connectedCallback() {
        window.addEventListener("message", this._onMessage);
        this._render();
      }

      disconnectedCallback() {
        window.removeEventListener("message", this._onMessage);
        this._unmount();
      }

      attributeChangedCallback() {
        if (this.isConnected) queueMicrotask(() => this._render());
      }

      get base() {
        return (this.getAttribute("base") || defaultBase).replace(/\/$/, "");
      }

      get mode() {
        return this.getAttribute("mode") === "frame" ? "frame" : "inline";
      }

      /** The kiosk page URL of frame mode (the key in the fragment, never sent). */
      get frameUrl() {
        const url = new URL(`${this.base}/static/kiosk.html`);
        url.searchParams.set("embed", "1");
        url.searchParams.set("host", window.location.origin);
        for (const name of ["avatar", "lang", "idle"]) {
          const value = this.getAttribute(name);
          if (value) url.searchParams.set(name, value);
        }
        const key = this.getAttribute("key");
        if (key) url.hash = new URLSearchParams({ key }).toString();
        return url.href;
      }

      _unmount() {
        this.kiosk?.destroy();
        this.kiosk = null;
        this._frame = null;
        this._mounted = null;
        this._root.replaceChildren();
      }

      _render() {
        const config = JSON.stringify(ATTRIBUTES.map((a) => this.getAttribute(a)));
        if (this._mounted === config) return;
        this._unmount();
        this._mounted = config;
        const style = document.createElement("style");
        style.textContent = HOST_CSS;
        if (this.mode === "frame") {
          const frame = document.createElement("iframe");
          frame.src = this.frameUrl;
          frame.title = this.getAttribute("title") || "Customer service assistant";
          frame.allow = "microphone; autoplay; fullscreen";
          frame.referrerPolicy = "origin";
          this._frame = frame;
          this._root.replaceChildren(style, frame);
        } else {
          this._mountInline(style, config).catch((err) => {
            console.error("avatar-rtc embed: cannot load the kiosk", err);
            this._emit("failure", { kind: "network", message: `Cannot load the assistant: ${err}` });
          });
        }
      }

      async _mountInline(style, config) {
        const link = document.createElement("link");
        link.rel = "stylesheet";
        link.href = `${this.base}/static/kiosk.css`;
        this._root.replaceChildren(style, link);
        const { Kiosk } = await import(`${this.base}/static/kiosk-app.js`);
        if (this._mounted !== config) return; // reconfigured meanwhile
        const idle = Number(this.getAttribute("idle")) || 20;
        this.kiosk = new Kiosk(this._root, {
          baseUrl: this.base,
          avatar: this.getAttribute("avatar") || null,
          language: this.getAttribute("lang") === "zh" ? "zh" : "en",
          idleMs: 1000 * Math.min(600, Math.max(5, idle)),
          apiKey: this.getAttribute("key") || null,
        });
        for (const type of EVENTS) this.kiosk.addEventListener(type, (e) => this._emit(type, e.detail));
        this._emit("ready", { avatar: this.getAttribute("avatar"), mode: "inline" });
      }

      _emit(type, detail) {
        this.dispatchEvent(new CustomEvent(`avatar-rtc:${type}`, { detail, bubbles: true }));
      }

      _relay(e) {
        if (!this._frame || e.source !== this._frame.contentWindow) return;
        if (e.origin !== new URL(this.base).origin) return;
        const data = e.data;
        if (!data || data.source !== "avatar-rtc" || typeof data.type !== "string") return;
        this._emit(data.type, data.detail);
      }

      /** Start a call (as if the visitor tapped; browsers may still want a tap for sound). */
      start() {
        if (this.kiosk) this.kiosk.start();
        else this._frame?.contentWindow?.postMessage({ source: "avatar-rtc-host", type: "start" }, new URL(this.base).origin);
      }

      /** End the call. */
      end() {
        if (this.kiosk) this.kiosk.end();
        else this._frame?.contentWindow?.postMessage({ source: "avatar-rtc-host", type: "end" }, new URL(this.base).origin);
      }
    }
    customElements.define(TAG, AvatarRtcAgent);
  }

  if (!script) return; // loaded some other way: the element is defined, nothing placed
  const agent = document.createElement(TAG);
  const data = script.dataset;
  agent.setAttribute("base", data.base || defaultBase);
  for (const name of ["avatar", "lang", "idle", "key", "mode"]) {
    if (data[name]) agent.setAttribute(name, data[name]);
  }
  const target = data.target ? document.querySelector(data.target) : null;
  if (data.target && !target) {
    console.error(`avatar-rtc embed: no element matches data-target ${JSON.stringify(data.target)}`);
    return;
  }
  if (target) {
    agent.toggleAttribute("data-fill", true);
    target.append(agent);
  } else {
    script.after(agent);
  }
})();

// Put the avatar into any web page with one tag:
//
//   <script src="https://AVATAR-HOST/static/embed.js" data-key="PUBLIC_KEY"
//           data-avatar="astronaut" data-lang="en" data-idle="30"
//           data-target="#help-box"></script>
//
// It defines the <avatar-rtc-agent> element (a web component whose shadow root holds an
// iframe of the kiosk page on the avatar host) and puts one into `data-target`, or right
// after the script tag. The host page sizes it: the element fills `data-target`; otherwise
// it is `width: 100%` with a 3:4 aspect ratio, and any CSS on `avatar-rtc-agent` overrides
// that. The element re-dispatches what happens in the call as DOM events named
// "avatar-rtc:<type>" (phase, connection, state, transcript, reply_text, mic, failure,
// ended) and has start() and end() methods.
//
// A classic script on purpose (not a module): only classic scripts see
// document.currentScript, which is how it reads its own data-* attributes and origin.
(() => {
  const script = document.currentScript;
  const TAG = "avatar-rtc-agent";
  const scriptUrl = new URL(script?.src || "", window.location.href);
  const defaultBase = new URL("..", scriptUrl).href.replace(/\/$/, ""); // .../static/embed.js → ...

  if (!customElements.get(TAG)) {
    class AvatarRtcAgent extends HTMLElement {
      static get observedAttributes() {
        return ["avatar", "lang", "idle", "key", "base"];
      }

      constructor() {
        super();
        this._root = this.attachShadow({ mode: "open" });
        this._frame = null;
        this._onMessage = (e) => this._relay(e);
      }

      connectedCallback() {
        window.addEventListener("message", this._onMessage);
        this._render();
      }

      disconnectedCallback() {
        window.removeEventListener("message", this._onMessage);
        this._frame = null;
        this._root.replaceChildren();
      }

      attributeChangedCallback() {
        if (this.isConnected) this._render();
      }

      get base() {
        return (this.getAttribute("base") || defaultBase).replace(/\/$/, "");
      }

      /** The kiosk page URL this element frames (the key in the fragment, never sent). */
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

      _render() {
        const src = this.frameUrl;
        if (this._frame?.src === src) return;
        const style = document.createElement("style");
        style.textContent = `
          :host { display: block; position: relative; width: 100%; aspect-ratio: 3 / 4;
                  min-height: 240px; background: #000; overflow: hidden; }
          :host([data-fill]) { height: 100%; aspect-ratio: auto; }
          iframe { position: absolute; inset: 0; width: 100%; height: 100%; border: 0; }`;
        const frame = document.createElement("iframe");
        frame.src = src;
        frame.title = this.getAttribute("title") || "Customer service assistant";
        frame.allow = "microphone; autoplay; fullscreen";
        frame.referrerPolicy = "origin";
        this._frame = frame;
        this._root.replaceChildren(style, frame);
      }

      _relay(e) {
        if (!this._frame || e.source !== this._frame.contentWindow) return;
        if (e.origin !== new URL(this.base).origin) return;
        const data = e.data;
        if (!data || data.source !== "avatar-rtc" || typeof data.type !== "string") return;
        this.dispatchEvent(new CustomEvent(`avatar-rtc:${data.type}`, { detail: data.detail, bubbles: true }));
      }

      _post(type) {
        this._frame?.contentWindow?.postMessage({ source: "avatar-rtc-host", type }, new URL(this.base).origin);
      }

      /** Start a call (as if the visitor tapped; browsers may still want a tap for sound). */
      start() {
        this._post("start");
      }

      /** End the call. */
      end() {
        this._post("end");
      }
    }
    customElements.define(TAG, AvatarRtcAgent);
  }

  if (!script) return; // loaded some other way: the element is defined, nothing placed
  const agent = document.createElement(TAG);
  const data = script.dataset;
  agent.setAttribute("base", data.base || defaultBase);
  for (const name of ["avatar", "lang", "idle", "key"]) {
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

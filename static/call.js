// Wire logic of one avatar call: WebRTC offer/answer and the control WebSocket.
// No DOM here, so the call page and the kiosk page share it. See docs/protocol.md.
//
//   const call = new CallClient();
//   call.addEventListener("media", (e) => (video.srcObject = e.detail.stream));
//   call.addEventListener("transcript", (e) => console.log(e.detail.text));
//   await call.start({ avatar: "astronaut" });
//
// Events (CustomEvent, payload in `detail`): "connection" {state}, "media" {stream},
// one per server event type ("hello", "state", "transcript", "reply_text", "barge_in",
// "timings", "pong", "error", "speech"), and "failure" {kind, message} where kind is
// "mic-denied" | "no-mic" | "busy" | "refused" | "network" | "lost".

export const HEARTBEAT_MS = 5000;
const GATHER_TIMEOUT_MS = 3000;

export const MIC_CONSTRAINTS = Object.freeze({
  audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
  video: false,
});

export class CallFailure extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

function waitForGathering(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", done);
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      pc.removeEventListener("icegatheringstatechange", done);
      resolve();
    }, timeoutMs);
    pc.addEventListener("icegatheringstatechange", done);
  });
}

export class CallClient extends EventTarget {
  constructor({ baseUrl = "", iceServers = [] } = {}) {
    super();
    this.baseUrl = baseUrl.replace(/\/$/, "");
    this.iceServers = iceServers;
    this.pc = null;
    this.ws = null;
    this.mic = null;
    this.session = null;
    this.state = "idle"; // idle | connecting | connected | closed
    this._heartbeat = null;
    this._closing = false;
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _setState(state) {
    this.state = state;
    this._emit("connection", { state });
  }

  _fail(kind, message) {
    this._emit("failure", { kind, message });
    return new CallFailure(kind, message);
  }

  /**
   * Start a call; resolves once the answer is applied and the control socket is open.
   * With `allowNoMic`, a denied or missing microphone still makes a call (typing only).
   */
  async start({ avatar = null, language = null, micStream = null, allowNoMic = false } = {}) {
    if (this.state === "connecting" || this.state === "connected") {
      throw new Error("call already running");
    }
    this._closing = false;
    this._setState("connecting");
    try {
      this.mic = micStream ?? (await this._openMic(allowNoMic));
      await this._negotiate(avatar, language);
      await this._openControl();
      this._setState("connected");
    } catch (err) {
      this._teardown();
      this._setState("closed");
      throw err instanceof CallFailure ? err : this._fail("network", String(err?.message ?? err));
    }
  }

  async _openMic(allowNoMic) {
    const typing = allowNoMic ? " You can type your questions." : "";
    let failure;
    if (!navigator.mediaDevices?.getUserMedia) {
      failure = ["no-mic", `This browser cannot capture audio here (HTTPS is needed).${typing}`];
    } else {
      try {
        return await navigator.mediaDevices.getUserMedia(MIC_CONSTRAINTS);
      } catch (err) {
        failure =
          err?.name === "NotAllowedError" || err?.name === "SecurityError"
            ? ["mic-denied", `Microphone access was denied; allow it and call again to speak.${typing}`]
            : ["no-mic", `No microphone available (${err?.message ?? err}).${typing}`];
      }
    }
    const error = this._fail(...failure);
    if (!allowNoMic) throw error;
    return new MediaStream(); // receive-only audio: the caller types
  }

  async _negotiate(avatar, language) {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this.pc = pc;
    const remote = new MediaStream();
    pc.addEventListener("track", (e) => {
      remote.addTrack(e.track);
      this._emit("media", { stream: remote });
    });
    pc.addEventListener("connectionstatechange", () => {
      if (["failed", "disconnected"].includes(pc.connectionState) && !this._closing) {
        this._lost(`media connection ${pc.connectionState}`);
      }
    });
    const [track] = this.mic.getAudioTracks();
    pc.addTransceiver(track ?? "audio", { direction: "sendrecv", streams: [this.mic] });
    pc.addTransceiver("video", { direction: "recvonly" });
    await pc.setLocalDescription(await pc.createOffer());
    await waitForGathering(pc, GATHER_TIMEOUT_MS);
    const body = { sdp: pc.localDescription.sdp, type: "offer" };
    if (avatar) body.avatar = avatar;
    if (language) body.language = language;
    let resp;
    try {
      resp = await fetch(`${this.baseUrl}/offer`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
    } catch (err) {
      throw this._fail("network", `Cannot reach the server: ${err?.message ?? err}`);
    }
    if (resp.status === 503) {
      const retry = resp.headers.get("Retry-After");
      const wait = retry ? ` Try again in ${retry} s.` : " Try again shortly.";
      throw this._fail("busy", `All agents are busy.${wait}`);
    }
    const answer = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      throw this._fail("refused", `The server refused the call: ${answer.error ?? resp.status}`);
    }
    this.session = answer.session;
    await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
  }

  _openControl() {
    const base = this.baseUrl || window.location.origin;
    const url = new URL(`/ws?session=${encodeURIComponent(this.session)}`, base);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      this.ws = ws;
      let opened = false;
      ws.addEventListener("open", () => {
        opened = true;
        this._heartbeat = setInterval(() => this._send({ type: "ping", t: Date.now() / 1000 }), HEARTBEAT_MS);
        resolve();
      });
      ws.addEventListener("message", (e) => {
        let msg;
        try {
          msg = JSON.parse(e.data);
        } catch {
          return;
        }
        if (msg && typeof msg.type === "string") this._emit(msg.type, msg);
      });
      ws.addEventListener("close", (e) => {
        if (!opened) {
          reject(this._fail("network", `Control channel refused (${e.code} ${e.reason})`));
        } else if (!this._closing) {
          this._lost(`control channel closed (${e.code}${e.reason ? ` ${e.reason}` : ""})`);
        }
      });
    });
  }

  _lost(why) {
    if (this._closing) return;
    this._emit("failure", { kind: "lost", message: `Connection lost: ${why}.` });
    this.hangUp();
  }

  _send(obj) {
    if (this.ws?.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(obj));
      return true;
    }
    return false;
  }

  /** Type instead of speaking (at most 2,000 characters). */
  sendText(text) {
    const t = String(text).trim().slice(0, 2000);
    return t.length > 0 && this._send({ type: "text", text: t });
  }

  /** Stop the avatar's current reply. */
  interrupt() {
    return this._send({ type: "interrupt" });
  }

  /** Mute or unmute the microphone without ending the call. */
  setMuted(muted) {
    for (const t of this.mic?.getAudioTracks() ?? []) t.enabled = !muted;
  }

  _teardown() {
    this._closing = true;
    clearInterval(this._heartbeat);
    this._heartbeat = null;
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000, "hang up");
    this.ws = null;
    this.pc?.close();
    this.pc = null;
    for (const t of this.mic?.getTracks() ?? []) t.stop();
    this.mic = null;
  }

  /** End the call and release the microphone. */
  hangUp() {
    if (this.state === "idle" || this.state === "closed") return;
    this._teardown();
    this._setState("closed");
  }
}

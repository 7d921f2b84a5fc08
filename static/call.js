// Wire logic of one avatar call: WebRTC offer/answer and the control WebSocket.
// No DOM here, so the call page, the kiosk page and the embed share it. See docs/protocol.md.
//
//   const call = new CallClient({ apiKey });            // apiKey: only where the server asks one
//   call.addEventListener("media", (e) => (video.srcObject = e.detail.stream));
//   call.addEventListener("reply_text", (e) => console.log(e.detail.text));
//   await call.start({ avatar: "astronaut", language: "en", micDeviceId });
//   ...
//   await call.reconnect();                             // after a "lost" failure
//
// Events (CustomEvent, payload in `detail`): "connection" {state}, "media" {stream},
// "mic" {active, muted, label}, one per server event type ("hello", "state", "speech",
// "transcript", "reply_text" (with `source` when the answer came from a document), "barge_in",
// "timings", "quality", "handoff", "pong", "error"), and
// "failure" {kind, message, retryAfterS?} where kind is "mic-denied" | "no-mic" | "busy" |
// "refused" | "network" | "lost" | "ended".

export const HEARTBEAT_MS = 5000;
const GATHER_TIMEOUT_MS = 3000;
const DISCONNECTED_GRACE_MS = 4000; // "disconnected" often heals by itself; "failed" does not

export const MIC_CONSTRAINTS = Object.freeze({
  echoCancellation: true,
  noiseSuppression: true,
  autoGainControl: true,
  channelCount: 1,
});

/** getUserMedia constraints for the microphone (a chosen device, processing always on). */
export function micConstraints(deviceId = null) {
  const audio = { ...MIC_CONSTRAINTS };
  if (deviceId) audio.deviceId = { exact: deviceId };
  return { audio, video: false };
}

export class CallFailure extends Error {
  constructor(kind, message, extra = {}) {
    super(message);
    this.kind = kind;
    Object.assign(this, extra);
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
  constructor({ baseUrl = "", iceServers = [], apiKey = null } = {}) {
    super();
    this.baseUrl = baseUrl.replace(/\/$/, "");
    this.iceServers = iceServers;
    this.apiKey = apiKey || null;
    this.pc = null;
    this.ws = null;
    this.mic = null;
    this.session = null;
    this.sessionToken = null; // the call's capability: resume it after a lost connection
    this.hello = null; // the server's last "hello": {session, avatar, fps, mouth_box}
    this.state = "idle"; // idle | connecting | connected | closed
    this.muted = false;
    this._options = null;
    this._heartbeat = null;
    this._graceTimer = null;
    this._closing = false;
    this._serverEnded = false;
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _setState(state) {
    this.state = state;
    this._emit("connection", { state });
  }

  _fail(kind, message, extra = {}) {
    this._emit("failure", { kind, message, ...extra });
    return new CallFailure(kind, message, extra);
  }

  /** True while a live, unmuted microphone track is being sent. */
  get micActive() {
    return (this.mic?.getAudioTracks() ?? []).some((t) => t.readyState === "live" && t.enabled);
  }

  _emitMic() {
    const [track] = this.mic?.getAudioTracks() ?? [];
    this._emit("mic", { active: this.micActive, muted: this.muted, label: track?.label ?? "" });
  }

  /**
   * Start a call; resolves once the answer is applied and the control socket is open.
   * With `allowNoMic`, a denied or missing microphone still makes a call (typing only).
   */
  async start({
    avatar = null,
    language = null,
    micDeviceId = null,
    micStream = null,
    allowNoMic = false,
  } = {}) {
    if (this.state === "connecting" || this.state === "connected") {
      throw new Error("call already running");
    }
    this._options = { avatar, language, micDeviceId, allowNoMic };
    this.session = null;
    this.sessionToken = null;
    await this._connect(micStream, null);
  }

  /**
   * Call again after a lost connection with the same options. The server keeps a call
   * for a short grace time: with its session token the same conversation resumes; when
   * the server no longer knows it, a new call starts.
   */
  async reconnect() {
    if (!this._options) throw new Error("reconnect() needs an earlier start()");
    if (this.state === "connecting" || this.state === "connected") return;
    const resume =
      this.session && this.sessionToken ? { session: this.session, token: this.sessionToken } : null;
    try {
      await this._connect(null, resume);
    } catch (err) {
      if (!resume || !(err instanceof CallFailure) || err.kind !== "refused") throw err;
      this.session = null;
      this.sessionToken = null;
      await this._connect(null, null);
    }
  }

  async _connect(micStream, resume) {
    this._closing = false;
    this._serverEnded = false;
    this._setState("connecting");
    try {
      this.mic = micStream ?? (await this._openMic(this._options.micDeviceId, this._options.allowNoMic));
      this.setMuted(this.muted);
      const token = resume ? null : await this._accessToken();
      await this._negotiate(token, resume);
      await this._openControl();
      this._setState("connected");
    } catch (err) {
      this._teardown();
      this._setState("closed");
      throw err instanceof CallFailure ? err : this._fail("network", String(err?.message ?? err));
    }
  }

  async _openMic(deviceId, allowNoMic) {
    const typing = allowNoMic ? " You can type your questions." : "";
    let failure;
    if (!navigator.mediaDevices?.getUserMedia) {
      failure = ["no-mic", `This browser cannot capture audio here (HTTPS is needed).${typing}`];
    } else {
      try {
        return await navigator.mediaDevices.getUserMedia(micConstraints(deviceId));
      } catch (err) {
        if (err?.name === "OverconstrainedError" && deviceId) {
          return this._openMic(null, allowNoMic); // the chosen microphone is gone: any will do
        }
        failure =
          err?.name === "NotAllowedError" || err?.name === "SecurityError"
            ? ["mic-denied", `Microphone access was denied; allow it for this site and call again to speak.${typing}`]
            : ["no-mic", `No microphone available (${err?.message ?? err}).${typing}`];
      }
    }
    const error = this._fail(...failure);
    if (!allowNoMic) throw error;
    return new MediaStream(); // receive-only audio: the caller types
  }

  /** Use another microphone during the call (the new track replaces the old one in place). */
  async switchMic(deviceId) {
    if (this._options) this._options.micDeviceId = deviceId || null;
    if (!this.pc || this.state !== "connected") return;
    const fresh = await navigator.mediaDevices.getUserMedia(micConstraints(deviceId));
    const [track] = fresh.getAudioTracks();
    const sender = this.pc.getTransceivers().find((t) => t.receiver.track?.kind === "audio")?.sender;
    if (!sender) {
      for (const t of fresh.getTracks()) t.stop();
      throw new Error("this call has no audio sender");
    }
    await sender.replaceTrack(track);
    for (const t of this.mic?.getTracks() ?? []) t.stop();
    this.mic = fresh;
    this.setMuted(this.muted);
  }

  async _accessToken() {
    if (!this.apiKey) return null;
    let resp;
    try {
      resp = await fetch(`${this.baseUrl}/session`, {
        method: "POST",
        headers: { Authorization: `Bearer ${this.apiKey}` },
      });
    } catch (err) {
      throw this._fail("network", `Cannot reach the server: ${err?.message ?? err}`);
    }
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) throw this._answerFailure(resp, body);
    const token = body.token ?? body.access_token;
    if (typeof token !== "string") throw this._fail("refused", "The server gave no access token.");
    return token;
  }

  _answerFailure(resp, body) {
    if (resp.status === 503 || resp.status === 429) {
      const retry = Number.parseInt(resp.headers.get("Retry-After") ?? "", 10);
      const wait = Number.isFinite(retry) ? ` Try again in ${retry} s.` : " Try again shortly.";
      const what = resp.status === 429 ? "Too many calls from here." : "All agents are busy.";
      return this._fail("busy", `${what}${wait}`, Number.isFinite(retry) ? { retryAfterS: retry } : {});
    }
    return this._fail("refused", `The server refused the call: ${body.error ?? resp.status}`);
  }

  async _negotiate(token, resume) {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this.pc = pc;
    const remote = new MediaStream();
    pc.addEventListener("track", (e) => {
      remote.addTrack(e.track);
      this._emit("media", { stream: remote });
    });
    pc.addEventListener("connectionstatechange", () => this._onPeerState(pc));
    const [track] = this.mic.getAudioTracks();
    pc.addTransceiver(track ?? "audio", { direction: "sendrecv", streams: [this.mic] });
    pc.addTransceiver("video", { direction: "recvonly" });
    await pc.setLocalDescription(await pc.createOffer());
    await waitForGathering(pc, GATHER_TIMEOUT_MS);
    const body = { sdp: pc.localDescription.sdp, type: "offer" };
    const { avatar, language } = this._options;
    if (avatar) body.avatar = avatar;
    if (language) body.language = language;
    if (token) body.token = token;
    if (resume) Object.assign(body, resume);
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
    const answer = await resp.json().catch(() => ({}));
    if (!resp.ok) throw this._answerFailure(resp, answer);
    this.session = answer.session;
    this.sessionToken = answer.session_token ?? answer.token ?? null;
    this.recorded = answer.recorded === true; // the server records this call's media
    this._emit("session", { session: this.session, recorded: this.recorded });
    await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
  }

  _onPeerState(pc) {
    if (pc !== this.pc || this._closing) return;
    const state = pc.connectionState;
    clearTimeout(this._graceTimer);
    if (state === "failed") {
      this._lost("media connection failed");
    } else if (state === "disconnected") {
      this._graceTimer = setTimeout(() => {
        if (pc === this.pc && pc.connectionState !== "connected") this._lost("media connection interrupted");
      }, DISCONNECTED_GRACE_MS);
    }
  }

  _openControl() {
    const base = this.baseUrl || window.location.origin;
    const url = new URL("/ws", base);
    url.searchParams.set("session", this.session);
    if (this.sessionToken) url.searchParams.set("token", this.sessionToken);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      this.ws = ws;
      let opened = false;
      ws.addEventListener("open", () => {
        opened = true;
        this._heartbeat = setInterval(() => this._send({ type: "ping", t: Date.now() / 1000 }), HEARTBEAT_MS);
        this._emitMic();
        resolve();
      });
      ws.addEventListener("message", (e) => this._onMessage(e.data));
      ws.addEventListener("close", (e) => {
        if (ws !== this.ws && opened) return; // a replaced socket
        if (!opened) {
          reject(this._fail("network", `Control channel refused (${e.code} ${e.reason})`));
        } else if (this._serverEnded) {
          this._fail("ended", "The agent ended the call.");
          this.hangUp();
        } else if (!this._closing) {
          this._lost(`control channel closed (${e.code}${e.reason ? ` ${e.reason}` : ""})`);
        }
      });
    });
  }

  _onMessage(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (!msg || typeof msg.type !== "string") return;
    if (msg.type === "state" && msg.state === "closed") this._serverEnded = true;
    if (msg.type === "hello") this.hello = msg;
    this._emit(msg.type, msg);
  }

  _lost(why) {
    if (this._closing) return;
    this._fail("lost", `Connection lost: ${why}.`);
    this._teardown();
    this._setState("closed");
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
    this.muted = Boolean(muted);
    for (const t of this.mic?.getAudioTracks() ?? []) t.enabled = !this.muted;
    this._emitMic();
  }

  /** The browser's WebRTC statistics of this call (null when no call). */
  getStats() {
    return this.pc ? this.pc.getStats() : Promise.resolve(null);
  }

  _teardown() {
    this._closing = true;
    clearInterval(this._heartbeat);
    clearTimeout(this._graceTimer);
    this._heartbeat = null;
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000, "hang up");
    this.ws = null;
    this.pc?.close();
    this.pc = null;
    for (const t of this.mic?.getTracks() ?? []) t.stop();
    this.mic = null;
    this._emitMic();
  }

  /** End the call and release the microphone. */
  hangUp() {
    if (this.state === "idle" || this.state === "closed") return;
    this._teardown();
    this._setState("closed");
  }
}

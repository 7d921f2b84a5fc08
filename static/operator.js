// The operator console at /operator: live calls with their transcripts, the handoff queue,
// take over / say / talk (the operator's own microphone, through the avatar) / hand back. The wire is docs/protocol.md, "Operator console"; the key is
// kept in memory only (or read from the page's #key= fragment, which is never sent).

const RECONNECT_MS = 2000;
const WHO = { caller: "Caller", agent: "Assistant", operator: "Operator" };
const MODES = { agent: "with the assistant", waiting: "waiting for a person", operator: "taken over" };

/** What the console knows: every live call (with its transcript) and the queue. No DOM. */
export class DeskModel {
  constructor() {
    this.calls = new Map();
    this.queue = [];
  }

  /** Apply one message of the live feed; returns the id of the call it changed (or null). */
  apply(msg) {
    if (msg.type === "calls") {
      this.calls = new Map(msg.calls.map((c) => [c.call_id, c]));
      this.queue = msg.queue;
      return null;
    }
    if (msg.type === "call") {
      this.calls.set(msg.call.call_id, { transcript: [], ...msg.call });
      return msg.call.call_id;
    }
    if (msg.type === "line") {
      this.calls.get(msg.call_id)?.transcript.push(msg.line);
      return msg.call_id;
    }
    if (msg.type === "handoff") {
      const known = this.calls.get(msg.call.call_id);
      this.calls.set(msg.call.call_id, { transcript: known?.transcript ?? [], ...msg.call });
      this.queue = msg.queue;
      return msg.call.call_id;
    }
    if (msg.type === "ended") {
      this.calls.delete(msg.call_id);
      this.queue = this.queue.filter((id) => id !== msg.call_id);
      return msg.call_id;
    }
    return null;
  }
}

/** The operator's connection: token, live feed (reconnecting), actions. */
export class OperatorClient extends EventTarget {
  constructor({ baseUrl = "", name, key }) {
    super();
    this.baseUrl = baseUrl;
    this.headers = { Authorization: `Bearer ${key}`, "X-Operator-Name": name };
    this.me = null;
    this.ws = null;
    this.closed = false;
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  async _post(path, body = undefined) {
    const init = { method: "POST", headers: { ...this.headers } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(this.baseUrl + path, init);
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) throw Object.assign(new Error(data.error ?? `HTTP ${resp.status}`), { status: resp.status });
    return data;
  }

  /** Sign in and open the live feed (rejects with the server's reason). */
  async connect() {
    const grant = await this._post("/operator/token");
    this.me = grant.operator;
    const wsUrl = new URL("/operator/ws", this.baseUrl || window.location.href);
    wsUrl.protocol = wsUrl.protocol === "https:" ? "wss:" : "ws:";
    wsUrl.searchParams.set("token", grant.token);
    const ws = new WebSocket(wsUrl);
    this.ws = ws;
    ws.addEventListener("open", () => this._emit("connection", { state: "connected" }));
    ws.addEventListener("message", (e) => this._emit("message", JSON.parse(e.data)));
    ws.addEventListener("close", () => {
      if (this.ws !== ws || this.closed) return;
      this._emit("connection", { state: "lost" });
      setTimeout(() => this.connect().catch((err) => this._emit("failure", { message: err.message })), RECONNECT_MS);
    });
  }

  take(callId) {
    return this._post(`/operator/calls/${encodeURIComponent(callId)}/take`);
  }

  say(callId, text) {
    return this._post(`/operator/calls/${encodeURIComponent(callId)}/say`, { text });
  }

  /** Send our voice offer for a call we have; resolves to the server's answer. */
  voice(callId, description) {
    const body = { sdp: description.sdp, type: description.type };
    return this._post(`/operator/calls/${encodeURIComponent(callId)}/voice`, body);
  }

  voiceOff(callId) {
    return this._post(`/operator/calls/${encodeURIComponent(callId)}/voice_off`);
  }

  handBack(callId) {
    return this._post(`/operator/calls/${encodeURIComponent(callId)}/hand_back`);
  }

  close() {
    this.closed = true;
    this.ws?.close(1000);
  }
}

function gathered(pc, timeoutMs = 3000) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", done);
      resolve();
    };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, timeoutMs);
  });
}

/** The operator's own voice on a call they have taken over: their microphone goes to the
 *  avatar (the caller hears it from the avatar's lips), the caller comes back to `audio`. */
export class OperatorVoice {
  constructor(client, callId, audio) {
    this.client = client;
    this.callId = callId;
    this.audio = audio;
    this.pc = null;
    this.stream = null;
    this.onEnded = null; // called once when the connection fails or the server ends it
  }

  async start() {
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    const pc = new RTCPeerConnection();
    this.pc = pc;
    pc.addEventListener("connectionstatechange", () => {
      if (this.pc === pc && ["failed", "closed"].includes(pc.connectionState)) this.onEnded?.();
    });
    for (const track of this.stream.getAudioTracks()) pc.addTrack(track, this.stream);
    pc.addEventListener("track", (e) => {
      this.audio.srcObject = e.streams[0] ?? new MediaStream([e.track]);
      this.audio.play().catch(() => {});
    });
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const answer = await this.client.voice(this.callId, pc.localDescription);
    await pc.setRemoteDescription(answer);
  }

  stop() {
    this.stream?.getTracks().forEach((t) => t.stop());
    this.pc?.close();
    this.pc = null;
    if (this.audio) this.audio.srcObject = null;
  }
}

// ---- the page --------------------------------------------------------------------------------
const $ = (id) => document.getElementById(id);
const ui = {
  login: $("login"), name: $("name"), key: $("key"), loginError: $("login-error"),
  connection: $("connection"), alert: $("alert"), desk: $("desk"),
  queue: $("queue"), queueCount: $("queue-count"), calls: $("calls"), callCount: $("call-count"),
  detail: $("detail"), title: $("detail-title"), mode: $("detail-mode"), transcript: $("transcript"),
  take: $("take"), handBack: $("hand-back"), sayForm: $("say-form"), sayText: $("say-text"),
  say: $("say"), actionError: $("action-error"), talk: $("talk"), callerAudio: $("caller-audio"),
};
const model = new DeskModel();
let client = null;
let selected = null;
let voice = null; // our voice peer (window.operatorVoice too, for tests and diagnostics)

function stopVoice() {
  voice?.stop();
  voice = window.operatorVoice = null;
  ui.talk.setAttribute("aria-pressed", "false");
  delete ui.talk.dataset.state;
  ui.talk.textContent = "Talk";
}

function label(call) {
  return `${call.call_id.slice(0, 8)} · ${call.avatar} · ${call.language}`;
}

function callButton(call) {
  const li = document.createElement("li");
  li.dataset.mode = call.mode;
  const button = document.createElement("button");
  button.type = "button";
  button.dataset.callId = call.call_id;
  button.setAttribute("aria-pressed", String(call.call_id === selected));
  const name = document.createElement("span");
  name.textContent = label(call);
  const mode = document.createElement("span");
  mode.className = "mode";
  mode.textContent = call.operator ? `${MODES[call.mode]} (${call.operator})` : MODES[call.mode];
  button.append(name, mode);
  button.addEventListener("click", () => select(call.call_id));
  li.append(button);
  return li;
}

function renderLists() {
  const waiting = model.queue.map((id) => model.calls.get(id)).filter(Boolean);
  ui.queue.replaceChildren(...waiting.map(callButton));
  ui.queueCount.textContent = String(waiting.length);
  ui.calls.replaceChildren(...[...model.calls.values()].map(callButton));
  ui.callCount.textContent = String(model.calls.size);
}

function renderDetail() {
  const call = selected ? model.calls.get(selected) : null;
  ui.detail.hidden = !call;
  if (!call) return;
  const mine = call.mode === "operator" && call.operator === client?.me;
  ui.title.textContent = label(call);
  ui.mode.textContent = call.operator ? `${MODES[call.mode]} by ${call.operator}` : MODES[call.mode];
  ui.detail.dataset.mode = call.mode;
  ui.take.disabled = call.mode === "operator";
  ui.handBack.disabled = !mine;
  ui.sayText.disabled = ui.say.disabled = ui.talk.disabled = !mine;
  if (!mine && voice?.callId === call.call_id) stopVoice();
  ui.transcript.replaceChildren(
    ...call.transcript.map((line) => {
      const li = document.createElement("li");
      li.dataset.who = line.who;
      li.lang = line.language;
      const who = document.createElement("span");
      who.className = "who";
      who.textContent = WHO[line.who] ?? line.who;
      const text = document.createElement("span");
      text.className = "text";
      text.textContent = line.text;
      li.append(who, text);
      return li;
    }),
  );
  ui.transcript.scrollTop = ui.transcript.scrollHeight;
}

function select(callId) {
  selected = callId;
  ui.actionError.hidden = true;
  renderLists();
  renderDetail();
}

function onMessage(msg) {
  const changed = model.apply(msg);
  if (msg.type === "handoff" && msg.state === "waiting") {
    ui.alert.textContent = `A caller is waiting for a person (${label(msg.call)}).`;
    ui.alert.hidden = false;
    if (!selected) selected = msg.call.call_id;
  }
  if (msg.type === "ended" && msg.call_id === voice?.callId) stopVoice();
  if (msg.type === "ended" && msg.call_id === selected) selected = null;
  if (model.queue.length === 0) ui.alert.hidden = true;
  renderLists();
  if (changed === null || changed === selected) renderDetail();
}

async function act(run) {
  ui.actionError.hidden = true;
  try {
    await run();
  } catch (err) {
    ui.actionError.textContent = err.message;
    ui.actionError.hidden = false;
  }
}

async function signIn(name, key) {
  ui.loginError.hidden = true;
  client?.close();
  client = new OperatorClient({ name, key });
  client.addEventListener("message", (e) => onMessage(e.detail));
  client.addEventListener("connection", (e) => {
    ui.connection.dataset.state = e.detail.state;
    ui.connection.textContent = e.detail.state === "connected" ? `Signed in as ${client.me}` : "Reconnecting…";
  });
  try {
    await client.connect();
    ui.login.hidden = true;
    ui.desk.hidden = false;
  } catch (err) {
    ui.loginError.textContent = `Cannot sign in: ${err.message}`;
    ui.loginError.hidden = false;
  }
}

ui.login.addEventListener("submit", (e) => {
  e.preventDefault();
  signIn(ui.name.value.trim(), ui.key.value);
  ui.key.value = "";
});
ui.take.addEventListener("click", () => act(() => client.take(selected)));
ui.handBack.addEventListener("click", () => {
  stopVoice();
  act(() => client.handBack(selected));
});
ui.talk.addEventListener("click", () => {
  if (voice) {
    const callId = voice.callId;
    stopVoice();
    act(() => client.voiceOff(callId));
    return;
  }
  act(async () => {
    voice = window.operatorVoice = new OperatorVoice(client, selected, ui.callerAudio);
    voice.onEnded = () => {
      stopVoice();
      ui.actionError.textContent = "Your voice connection to the call ended.";
      ui.actionError.hidden = false;
    };
    ui.talk.setAttribute("aria-pressed", "true");
    ui.talk.textContent = "Stop talking";
    try {
      await voice.start();
      ui.talk.dataset.state = "live";
    } catch (err) {
      stopVoice();
      throw err;
    }
  });
});
ui.sayForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const text = ui.sayText.value.trim();
  if (!text) return;
  act(async () => {
    await client.say(selected, text);
    ui.sayText.value = "";
  });
});

const fragment = new URLSearchParams(window.location.hash.slice(1));
if (fragment.get("key")) {
  ui.key.value = fragment.get("key");
  ui.name.value = fragment.get("name") ?? "";
  history.replaceState(null, "", window.location.pathname); // the key leaves the address bar
  if (ui.name.value) signIn(ui.name.value, ui.key.value);
}

// The live page: camera -> canvas (a time stamp drawn into each frame) -> WebRTC -> the server's
// live swap -> WebRTC -> <video>. Glass-to-glass latency: the stamp read back from each returned
// frame, against the clock now; fps: distinct returned frames per second.
const $ = (id) => document.getElementById(id);
const BITS = 20;            // ms, modulo 2^20 (17 minutes): far above any latency
const CHECK = 4;            // a checksum nibble: a misread strip is dropped, not counted
const MOD = 1 << BITS;
const state = { state: "idle", fps: 0, latencyMs: null, latencies: [], received: 0, sent: 0, error: null, server: null };
window.liveState = state;
const sentFrames = new Map(); // stamp -> ImageData, the last few (for window.livePair)
let pc = null, camera = null, sessionId = null, timers = [];
let lastPair = null, lastStamp = null;

function checksum(v) {
  let s = 0;
  for (let i = 0; i < BITS; i += 4) s += (v >> i) & 15;
  return s & 15;
}

function geometry(w, h) {
  const bw = Math.max(6, Math.floor(w / 32));
  return { bw, bh: bw, y: h - bw };
}

function drawStamp(ctx, w, h, value) {
  const { bw, bh, y } = geometry(w, h);
  const word = value | (checksum(value) << BITS);
  ctx.fillStyle = "#000";
  ctx.fillRect(0, y, bw * (BITS + CHECK), bh);
  ctx.fillStyle = "#fff";
  for (let i = 0; i < BITS + CHECK; i++) if ((word >> i) & 1) ctx.fillRect(i * bw, y, bw, bh);
}

function readStamp(ctx, w, h) {
  const { bw, bh, y } = geometry(w, h);
  const strip = ctx.getImageData(0, y, bw * (BITS + CHECK), bh).data;
  const stride = bw * (BITS + CHECK) * 4;
  let word = 0;
  for (let i = 0; i < BITS + CHECK; i++) {
    let sum = 0, n = 0;
    const cx = i * bw + (bw >> 1), cy = bh >> 1;
    for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) {
      const o = (cy + dy) * stride + (cx + dx) * 4;
      sum += (strip[o] + strip[o + 1] + strip[o + 2]) / 3; n++;
    }
    if (sum / n > 128) word |= 1 << i;
  }
  const value = word & (MOD - 1);
  return ((word >>> BITS) & 15) === checksum(value) ? value : null;
}

function median(xs) {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

function setState(s, error) {
  state.state = s;
  $("state").textContent = s;
  if (error !== undefined) { state.error = error; $("error").textContent = error || ""; }
}

function onFrame(video, callback) {
  // one call per presented frame where the browser has requestVideoFrameCallback
  if (video.requestVideoFrameCallback) {
    const tick = () => { callback(); video.requestVideoFrameCallback(tick); };
    video.requestVideoFrameCallback(tick);
  } else {
    timers.push(setInterval(callback, 15));
  }
}

async function start() {
  const photo = $("source").files[0];
  if (!photo) { setState("idle", "choose a source face photo first"); return; }
  setState("opening the camera", null);
  camera = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  const local = document.createElement("video");
  local.muted = true; local.playsInline = true; local.srcObject = camera;
  await local.play();
  const w = local.videoWidth - (local.videoWidth % 2), h = local.videoHeight - (local.videoHeight % 2);
  const sent = $("sent");
  sent.width = w; sent.height = h;
  const sctx = sent.getContext("2d", { willReadFrequently: true });
  const draw = () => {
    sctx.drawImage(local, 0, 0, w, h);
    const stamp = Math.round(performance.now()) % MOD;
    drawStamp(sctx, w, h, stamp);
    sentFrames.set(stamp, sctx.getImageData(0, 0, w, h));
    if (sentFrames.size > 30) sentFrames.delete(sentFrames.keys().next().value);
    state.sent++;
  };
  onFrame(local, draw);

  const rcanvas = document.createElement("canvas");
  const rctx = rcanvas.getContext("2d", { willReadFrequently: true });
  const arrivals = [];
  const remote = $("remote");
  onFrame(remote, () => {
    const rw = remote.videoWidth, rh = remote.videoHeight;
    if (!rw) return;
    if (rcanvas.width !== rw) { rcanvas.width = rw; rcanvas.height = rh; }
    rctx.drawImage(remote, 0, 0, rw, rh);
    const stamp = readStamp(rctx, rw, rh);
    if (stamp === null) return;
    const now = performance.now();
    const latency = (Math.round(now) - stamp + MOD) % MOD;
    if (stamp === lastStamp) return; // the same frame shown again
    lastStamp = stamp;
    state.received++;
    state.latencies.push(latency);
    if (state.latencies.length > 300) state.latencies.shift();
    arrivals.push(now);
    while (arrivals.length && now - arrivals[0] > 2000) arrivals.shift();
    state.fps = arrivals.length > 1 ? (arrivals.length - 1) * 1000 / (arrivals[arrivals.length - 1] - arrivals[0]) : 0;
    state.latencyMs = median(state.latencies.slice(-30));
    $("fps").textContent = state.fps.toFixed(1);
    $("latency").textContent = state.latencyMs;
    const sentImage = sentFrames.get(stamp);
    if (sentImage) lastPair = { stamp, sent: sentImage, received: rctx.getImageData(0, 0, rw, rh) };
  });

  pc = new RTCPeerConnection();
  pc.addTrack(sent.captureStream(30).getVideoTracks()[0]);
  pc.ontrack = (e) => { remote.srcObject = new MediaStream([e.track]); setState("live"); };
  pc.onconnectionstatechange = () => {
    if (["failed", "disconnected"].includes(pc.connectionState)) setState(pc.connectionState);
  };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {  // the server takes the offer with every candidate in it
    if (pc.iceGatheringState === "complete") return resolve();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && resolve();
    setTimeout(resolve, 3000);
  });
  const form = new FormData();
  form.append("sdp", pc.localDescription.sdp);
  form.append("type", pc.localDescription.type);
  form.append("engine", $("engine").value);
  form.append("source", photo);
  setState("connecting");
  const answer = await apiJson("/api/live/offer", { method: "POST", body: form });
  sessionId = answer.id;
  await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
  timers.push(setInterval(async () => {
    try {
      state.server = await apiJson(`/api/live/${sessionId}`);
      const s = state.server;
      $("server").textContent = `server: ${s.fps ?? "–"} fps, p95 ${s.latency_p95_ms ?? "–"} ms through the swap, ` +
        `${s.dropped ?? 0} dropped${s.error ? ", " + s.error : ""}`;
      if (s.error) setState("failed", s.error);
    } catch (err) { /* the session ended */ }
  }, 1000));
  $("stop").disabled = false;
}

async function stop() {
  for (const t of timers) clearInterval(t);
  timers = [];
  if (sessionId) await api(`/api/live/${sessionId}`, { method: "DELETE" }).catch(() => {});
  if (pc) pc.close();
  if (camera) for (const t of camera.getTracks()) t.stop();
  pc = camera = sessionId = null;
  $("stop").disabled = true;
  setState("stopped");
}

function toDataUrl(image) {
  const c = document.createElement("canvas");
  c.width = image.width; c.height = image.height;
  c.getContext("2d").putImageData(image, 0, 0);
  return c.toDataURL("image/png");
}

// For tests and tools: the newest returned frame with the frame that was sent under its stamp.
window.livePair = () => lastPair && { stamp: lastPair.stamp, sent: toDataUrl(lastPair.sent), received: toDataUrl(lastPair.received) };
window.liveStop = stop;

$("start").onclick = () => start().catch((err) => setState("failed", err.message));
$("stop").onclick = stop;
linkPages();

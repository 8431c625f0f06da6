// callsec demo call: one RTCPeerConnection to the calls server, signaling over the same
// origin's TLS WebSocket (protocol v1, token in the first message), and the browser's own
// view of the security of that connection (getStats).
//
// URL parameters (for links and for the interop tests; all optional):
//   room, user, token      fill the form; without a token the development issuer is asked
//   autojoin=1             join at once
//   cam=0, mic=0           publish no camera / no microphone
//   width, height          camera size asked for (default 640x480)
//   report=MS              every MS ms, console.log("CALLSEC-REPORT " + JSON) of the state
//   share_at=MS            start a screen share MS ms after media connects ...
//   share_for=MS           ... and stop it MS ms later
//   fakeshare=1            share a canvas when getDisplayMedia is unavailable (headless)
//   tamper=1               corrupt the server's DTLS fingerprint in its answer (must fail)
//   rejoin=1               after the server closes signaling, try once more with the token
//   sdp=1                  add the current local and remote descriptions to each report
'use strict';

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const started = Date.now();

const state = {
  user: '', room: '', token: '', session: '',
  ws: null, wsState: 'new', closeCode: null, closeReason: '',
  nextId: 1, pending: new Map(),
  pc: null, local: null, share: null, shareSender: null /* its transceiver */, shareState: 'off', shareSource: '',
  chain: Promise.resolve(), offering: false,
  participants: new Set(), remote: new Map(),
  events: [], errors: [], rejoin: '', joined: false,
  stats: {}, history: [], lastTotals: null,
};

function log(msg) {
  const line = `${((Date.now() - started) / 1000).toFixed(1)}s ${msg}`;
  state.events.push(line);
  if (state.events.length > 200) state.events.shift();
  const el = $('log');
  el.textContent = `${line}\n${el.textContent}`.slice(0, 8000);
}

function fail(msg) {
  state.errors.push(String(msg));
  log(`error: ${msg}`);
}

function setStatus(text, cls) {
  const el = $('status');
  el.textContent = text;
  el.className = cls || '';
}

// --- signaling ------------------------------------------------------------------------

function send(type, fields = {}) {
  const id = state.nextId++;
  const msg = { v: 1, id, type, ...fields };
  state.ws.send(JSON.stringify(msg));
  return id;
}

function request(type, fields) {
  return new Promise((resolve, reject) => {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) {
      reject(new Error('signaling closed'));
      return;
    }
    state.pending.set(send(type, fields), { resolve, reject });
  });
}

function openSignaling(token) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://${location.host}/`);
    let authed = false;
    ws.onopen = () => ws.send(JSON.stringify({ v: 1, id: 0, type: 'auth', token }));
    ws.onmessage = (e) => {
      let msg;
      try { msg = JSON.parse(e.data); } catch { fail('bad JSON from server'); return; }
      if (!authed) {
        if (msg.type === 'authenticated') {
          authed = true;
          state.session = msg.session_id;
          resolve(ws);
        } else {
          reject(new Error(msg.message || msg.type));
        }
        return;
      }
      onMessage(msg);
    };
    ws.onclose = (e) => {
      if (!authed) reject(new Error(`closed ${e.code} ${e.reason}`));
      else onClosed(e);
    };
  });
}

function onMessage(msg) {
  const waiting = msg.id !== undefined && state.pending.get(msg.id);
  if (waiting) {
    state.pending.delete(msg.id);
    if (msg.type === 'error') waiting.reject(new Error(`${msg.code}: ${msg.message}`));
    else {
      // Our offer is answered: a server offer after this one is not glare.
      if (msg.type === 'answer') state.offering = false;
      waiting.resolve(msg);
    }
    return;
  }
  switch (msg.type) {
    case 'offer':
      // Glare: the server drops its offer when ours reaches it, and offers again after.
      if (state.offering) log('server offer ignored (ours is out)');
      else enqueue(() => answerServer(msg.sdp));
      break;
    case 'participant_joined':
      state.participants.add(msg.user_id); log(`${msg.user_id} joined`); showPeople(); break;
    case 'participant_left':
      state.participants.delete(msg.user_id); log(`${msg.user_id} left`); showPeople(); break;
    case 'participant_muted':
      log(`${msg.user_id} ${msg.muted ? 'muted' : 'unmuted'} ${msg.track}`); break;
    case 'participant_screen_share':
      log(`${msg.user_id} screen share ${msg.on ? 'on' : 'off'}`); break;
    case 'session_revoked':
      log('session revoked by the server'); break;
    case 'error':
      fail(`${msg.code}: ${msg.message}`); break;
    default:
      log(`server: ${msg.type}`);
  }
}

function onClosed(e) {
  state.wsState = 'closed';
  state.closeCode = e.code;
  state.closeReason = e.reason;
  log(`signaling closed ${e.code} ${e.reason}`);
  setStatus(`signaling closed (${e.code})`, 'bad');
  for (const p of state.pending.values()) p.reject(new Error('signaling closed'));
  state.pending.clear();
  if (params.get('rejoin') === '1' && !state.rejoin) {
    state.rejoin = 'trying';
    setTimeout(async () => {
      try {
        const ws = await openSignaling(state.token);
        await new Promise((resolve, reject) => {
          ws.onmessage = (m) => {
            const msg = JSON.parse(m.data);
            if (msg.type === 'joined') resolve(); else reject(new Error(msg.message || msg.type));
          };
          ws.onclose = (c) => reject(new Error(`closed ${c.code}`));
          ws.send(JSON.stringify({ v: 1, id: 1, type: 'join', room: state.room }));
        });
        state.rejoin = 'joined';
      } catch (err) {
        state.rejoin = `refused: ${err.message}`;
      }
      log(`rejoin with the same token: ${state.rejoin}`);
    }, 300);
  }
}

function showPeople() {
  $('people').textContent = state.participants.size
    ? `with ${[...state.participants].join(', ')}` : 'alone so far';
}

// --- negotiation ----------------------------------------------------------------------

// One negotiation at a time, in order.
function enqueue(step) {
  state.chain = state.chain.then(step).catch((e) => fail(e.message || e));
  return state.chain;
}

function tamper(sdp) {
  // Flip one hex digit of the fingerprint: what a man in the middle of signaling would
  // have to do to put its own certificate in. DTLS must then fail.
  return sdp.replace(/(a=fingerprint:sha-256 )([0-9A-Fa-f])/, (_, p, c) => p + (c === '0' ? '1' : '0'));
}

function offerFromUs() {
  state.offering = true;
  return enqueue(async () => {
    let reply;
    try {
      const offer = await state.pc.createOffer();
      await state.pc.setLocalDescription(offer);
      state.lastOffer = state.pc.localDescription.sdp;
      reply = await request('offer', { sdp: state.lastOffer });
      state.lastAnswer = reply.sdp;
    } finally {
      state.offering = false;
    }
    let sdp = reply.sdp;
    if (params.get('tamper') === '1') { sdp = tamper(sdp); log('answer fingerprint tampered'); }
    await state.pc.setRemoteDescription({ type: 'answer', sdp });
  });
}

async function answerServer(sdp) {
  await state.pc.setRemoteDescription({ type: 'offer', sdp });
  const answer = await state.pc.createAnswer();
  await state.pc.setLocalDescription(answer);
  await request('answer', { sdp: state.pc.localDescription.sdp });
}

function onTrack(e) {
  const track = e.track;
  const stream = e.streams[0];
  const owner = stream ? stream.id : 'unknown';
  const entry = { track, owner, mid: e.transceiver.mid, el: null };
  state.remote.set(track.id, entry);
  log(`receiving ${track.kind} from ${owner} (mid ${entry.mid})`);
  if (track.kind === 'audio') {
    const el = document.createElement('audio');
    el.autoplay = true;
    el.srcObject = new MediaStream([track]);
    document.body.appendChild(el);
    entry.el = el;
  } else {
    const fig = document.createElement('figure');
    fig.className = 'tile';
    const video = document.createElement('video');
    video.autoplay = true; video.playsInline = true; video.muted = true;
    video.srcObject = new MediaStream([track]);
    const cap = document.createElement('figcaption');
    const videos = [...state.remote.values()].filter((r) => r.owner === owner && r.track.kind === 'video' && r.track.readyState === 'live');
    if (videos.length > 1) { fig.classList.add('screen'); cap.textContent = `${owner} · screen`; } else cap.textContent = owner;
    fig.append(video, cap);
    $('tiles').appendChild(fig);
    entry.el = fig;
  }
  const gone = () => {
    if (entry.el) { entry.el.remove(); entry.el = null; }
    log(`${track.kind} from ${owner} ended`);
  };
  track.addEventListener('ended', gone);
  if (stream) stream.addEventListener('removetrack', (ev) => { if (ev.track === track) gone(); });
}

// --- screen share ---------------------------------------------------------------------

function canvasShare() {
  const canvas = document.createElement('canvas');
  canvas.width = 640; canvas.height = 360;
  const ctx = canvas.getContext('2d');
  let n = 0;
  const timer = setInterval(() => {
    n += 1;
    ctx.fillStyle = '#223'; ctx.fillRect(0, 0, 640, 360);
    ctx.fillStyle = '#f0c36b'; ctx.font = '40px sans-serif';
    ctx.fillText(`${state.user}'s screen ${n}`, 40, 180);
    ctx.fillRect((n * 7) % 640, 300, 40, 40);
  }, 66);
  const stream = canvas.captureStream(15);
  stream.getVideoTracks()[0].addEventListener('ended', () => clearInterval(timer));
  return stream;
}

async function startShare() {
  if (state.share) return;
  let stream;
  try {
    stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    state.shareSource = 'display';
  } catch (e) {
    if (params.get('fakeshare') !== '1') { fail(`screen share: ${e.message}`); return; }
    stream = canvasShare();
    state.shareSource = 'canvas';
  }
  const track = stream.getVideoTracks()[0];
  track.addEventListener('ended', () => stopShare());
  state.share = stream;
  // A new sendonly m-line: addTrack would reuse a section the server offered for
  // someone else's video, which the server forwards on and never receives on.
  state.shareSender = state.pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
  state.shareState = 'on';
  $('share').textContent = 'Stop sharing'; $('share').classList.add('on');
  offerFromUs();
  send('screen_share_on');
  log(`screen share on (${state.shareSource})`);
}

async function stopShare() {
  if (!state.share) return;
  const transceiver = state.shareSender;
  state.share.getTracks().forEach((t) => t.stop());
  state.share = null; state.shareSender = null; state.shareState = 'stopped';
  $('share').textContent = 'Share screen'; $('share').classList.remove('on');
  if (state.pc && state.pc.signalingState !== 'closed') {
    // Stopped: port 0 in the next offer, and the others' copies of the track end.
    transceiver.stop();
    offerFromUs();
    send('screen_share_off');
  }
  log('screen share off');
}

// --- join / leave ---------------------------------------------------------------------

async function join(ev) {
  if (ev) ev.preventDefault();
  state.room = $('room').value.trim();
  state.user = $('user').value.trim();
  state.token = $('token').value.trim();
  $('join').disabled = true;
  try {
    if (!state.token) {
      const q = new URLSearchParams({ user: state.user, room: state.room });
      const r = await fetch(`/dev/token?${q}`);
      if (!r.ok) throw new Error(`no development token (${r.status}): pass a token`);
      state.token = (await r.json()).token;
    }
    setStatus('connecting signaling…');
    state.ws = await openSignaling(state.token);
    state.wsState = 'open';
    const joined = await request('join', { room: state.room });
    state.joined = true;
    joined.participants.forEach((p) => state.participants.add(p));
    showPeople();
    $('join-panel').hidden = true; $('call').hidden = false; $('stats-panel').hidden = false;
    $('room-label').textContent = `room ${state.room} as ${state.user}`;
    log(`joined ${state.room}`);

    const want = { audio: $('mic').checked, video: $('cam').checked };
    const width = Number(params.get('width')) || 640;
    const height = Number(params.get('height')) || 480;
    state.local = (want.audio || want.video)
      ? await navigator.mediaDevices.getUserMedia({
        audio: want.audio, video: want.video && { width: { ideal: width }, height: { ideal: height } },
      })
      : new MediaStream();
    $('local-video').srcObject = state.local;

    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    state.pc = pc;
    pc.ontrack = onTrack;
    pc.onconnectionstatechange = () => {
      log(`connection ${pc.connectionState}`);
      if (pc.connectionState === 'connected') {
        setStatus('connected: DTLS 1.2 + SRTP', 'ok');
        scheduleShare();
      } else if (['failed', 'closed', 'disconnected'].includes(pc.connectionState)) {
        setStatus(`media ${pc.connectionState}`, 'bad');
      }
    };
    for (const t of state.local.getTracks()) pc.addTrack(t, state.local);
    // Receive-only until others publish: the server adds sections by offering.
    if (!want.audio) pc.addTransceiver('audio', { direction: 'recvonly' });
    if (!want.video) pc.addTransceiver('video', { direction: 'recvonly' });
    await offerFromUs();
    setInterval(pollStats, 1000);
  } catch (e) {
    fail(e.message || e);
    setStatus(`could not join: ${e.message || e}`, 'bad');
    $('join').disabled = false;
  }
}

let shareScheduled = false;
function scheduleShare() {
  const at = params.get('share_at');
  if (at === null || shareScheduled) return;
  shareScheduled = true;
  setTimeout(async () => {
    await startShare();
    const dur = params.get('share_for');
    if (dur !== null) setTimeout(stopShare, Number(dur));
  }, Number(at));
}

function leave() {
  if (state.share) stopShare();
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    send('leave');
    state.ws.close(1000, 'left');
  }
  if (state.pc) state.pc.close();
  if (state.local) state.local.getTracks().forEach((t) => t.stop());
  setStatus('left');
  log('left the call');
}

function toggleMute() {
  const tracks = state.local ? state.local.getAudioTracks() : [];
  if (!tracks.length) return;
  const muted = tracks[0].enabled;
  tracks.forEach((t) => { t.enabled = !muted; });
  $('mute').textContent = muted ? 'Unmute' : 'Mute';
  send(muted ? 'mute' : 'unmute', { track: 'audio' });
}

// --- what the browser reports ---------------------------------------------------------

async function collect() {
  const pc = state.pc;
  const out = { inbound: [], outbound: [] };
  if (!pc) return out;
  const report = await pc.getStats();
  const byId = new Map();
  report.forEach((s) => byId.set(s.id, s));
  let pairId = null;
  report.forEach((s) => {
    if (s.type === 'transport') {
      out.dtlsState = s.dtlsState;
      out.tlsVersion = s.tlsVersion;
      out.dtlsCipher = s.dtlsCipher;
      out.srtpCipher = s.srtpCipher;
      pairId = s.selectedCandidatePairId || pairId;
      const cert = s.remoteCertificateId && byId.get(s.remoteCertificateId);
      if (cert) out.fingerprint = `${cert.fingerprintAlgorithm} ${cert.fingerprint}`;
    } else if (s.type === 'candidate-pair' && !pairId && (s.selected || (s.nominated && s.state === 'succeeded'))) {
      pairId = s.id;
    } else if (s.type === 'inbound-rtp') {
      out.inbound.push({
        kind: s.kind, mid: s.mid, ssrc: s.ssrc, track: s.trackIdentifier,
        packets: s.packetsReceived || 0, bytes: s.bytesReceived || 0,
        frames: s.framesDecoded || 0, samples: s.totalSamplesReceived || 0,
        width: s.frameWidth || 0, height: s.frameHeight || 0,
      });
    } else if (s.type === 'outbound-rtp') {
      out.outbound.push({
        kind: s.kind, mid: s.mid, ssrc: s.ssrc, packets: s.packetsSent || 0, bytes: s.bytesSent || 0,
        frames: s.framesEncoded || 0, width: s.frameWidth || 0, height: s.frameHeight || 0,
        limit: s.qualityLimitationReason,
      });
    }
  });
  // Every ICE candidate and pair, for diagnosis.
  out.candidates = [];
  report.forEach((s) => {
    if (s.type === 'local-candidate' || s.type === 'remote-candidate') {
      out.candidates.push(`${s.type} ${s.address || s.ip}:${s.port} ${s.protocol} ${s.candidateType}`);
    } else if (s.type === 'candidate-pair') {
      out.candidates.push(`pair ${s.state}${s.nominated ? ' nominated' : ''}`);
    }
  });
  // What the server's receiver reports say about our streams.
  report.forEach((s) => {
    if (s.type !== 'remote-inbound-rtp') return;
    const o = out.outbound.find((x) => x.ssrc === s.ssrc);
    if (o) { o.remoteLost = s.packetsLost; o.remoteFractionLost = s.fractionLost; o.rtt = s.roundTripTime; }
  });
  const pair = pairId && byId.get(pairId);
  if (pair) {
    const l = byId.get(pair.localCandidateId);
    const r = byId.get(pair.remoteCandidateId);
    const fmt = (c) => c && `${c.address || c.ip}:${c.port} ${c.protocol} ${c.candidateType}`;
    out.pair = `${fmt(l)} ⇄ ${fmt(r)}`;
    // The browser's send-side bandwidth estimate: what congestion feedback allows.
    out.bwe = pair.availableOutgoingBitrate;
  }
  return out;
}

async function pollStats() {
  let s;
  try { s = await collect(); } catch (e) { return; }
  state.stats = s;
  $('s-dtls').textContent = s.tlsVersion
    ? `${s.tlsVersion === 'FEFD' ? 'DTLS 1.2' : s.tlsVersion} ${s.dtlsCipher || ''} (${s.dtlsState})`
    : (s.dtlsState || state.pc.connectionState);
  $('s-srtp').textContent = s.srtpCipher || '–';
  $('s-fp').textContent = s.fingerprint || '–';
  $('s-ice').textContent = s.pair || '–';
  const rows = [...s.inbound.map((x) => ['⬇', x]), ...s.outbound.map((x) => ['⬆', x])];
  $('streams').tBodies[0].replaceChildren(...rows.map(([dir, x]) => {
    const tr = document.createElement('tr');
    const cells = [`${dir} ${x.kind} ${x.mid ?? ''}`, x.packets, x.bytes, x.kind === 'audio' && dir === '⬇' ? x.samples : x.frames,
      x.width ? `${x.width}×${x.height}` : ''];
    cells.forEach((c) => { const td = document.createElement('td'); td.textContent = c; tr.appendChild(td); });
    return tr;
  }));
  const totals = {
    t: performance.now(),
    rx: s.inbound.reduce((a, x) => a + x.bytes, 0),
    tx: s.outbound.reduce((a, x) => a + x.bytes, 0),
  };
  if (state.lastTotals) {
    const dt = (totals.t - state.lastTotals.t) / 1000;
    state.history.push({
      rx: (8 * (totals.rx - state.lastTotals.rx)) / 1000 / dt,
      tx: (8 * (totals.tx - state.lastTotals.tx)) / 1000 / dt,
    });
    if (state.history.length > 60) state.history.shift();
    plot();
  }
  state.lastTotals = totals;
}

function plot() {
  const c = $('plot');
  const ctx = c.getContext('2d');
  const max = Math.max(100, ...state.history.flatMap((h) => [h.rx, h.tx]));
  ctx.clearRect(0, 0, c.width, c.height);
  ctx.fillStyle = '#8fa3b8'; ctx.font = '11px sans-serif';
  ctx.fillText(`${Math.round(max)} kbit/s`, 4, 12);
  for (const [key, color] of [['rx', '#6bd49a'], ['tx', '#6b9ff0']]) {
    ctx.strokeStyle = color; ctx.lineWidth = 2; ctx.beginPath();
    state.history.forEach((h, i) => {
      const x = (i / 59) * (c.width - 8) + 4;
      const y = c.height - 4 - (h[key] / max) * (c.height - 20);
      if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
    });
    ctx.stroke();
  }
}

async function report() {
  let s = state.stats;
  try { s = await collect(); } catch (e) { /* closed */ }
  const tracks = [...state.remote.values()].map((r) => ({
    id: r.track.id, kind: r.track.kind, owner: r.owner, mid: r.mid, state: r.track.readyState, muted: r.track.muted,
  }));
  console.log(`CALLSEC-REPORT ${JSON.stringify({
    user: state.user, now: Date.now(), ws: state.wsState, closeCode: state.closeCode,
    joined: state.joined, pc: state.pc ? state.pc.connectionState : 'none',
    participants: [...state.participants], share: state.shareState, shareSource: state.shareSource,
    rejoin: state.rejoin, tracks, errors: state.errors, ...s,
    ...(params.get('sdp') === '1' && state.pc ? {
      lastOffer: state.lastOffer, lastAnswer: state.lastAnswer,
      localSdp: state.pc.localDescription && state.pc.localDescription.sdp,
      remoteSdp: state.pc.remoteDescription && state.pc.remoteDescription.sdp,
    } : {}),
  })}`);
}

// --- wiring ---------------------------------------------------------------------------

for (const key of ['room', 'user', 'token']) if (params.get(key)) $(key).value = params.get(key);
if (!$('user').value) $('user').value = `guest-${Math.random().toString(36).slice(2, 7)}`;
if (params.get('cam') === '0') $('cam').checked = false;
if (params.get('mic') === '0') $('mic').checked = false;
$('join-form').addEventListener('submit', join);
$('share').addEventListener('click', () => (state.share ? stopShare() : startShare()));
$('mute').addEventListener('click', toggleMute);
$('leave').addEventListener('click', leave);
if (params.get('report')) setInterval(report, Number(params.get('report')));
if (params.get('autojoin') === '1') join();

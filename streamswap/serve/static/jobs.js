// The jobs page: create a job (multipart upload), follow its progress (Server-Sent Events read
// with fetch, so the token goes in a header), preview and download the result, list all jobs.
const $ = (id) => document.getElementById(id);
let current = null;

function fmt(n, digits = 1) {
  return n === null || n === undefined ? "–" : Number(n).toFixed(digits);
}

function showJob(job) {
  $("current").hidden = false;
  $("cur-id").textContent = job.id;
  $("cur-state").textContent = job.state;
  const total = job.frames_expected || 0;
  $("cur-progress").max = total || 1;
  $("cur-progress").value = total ? job.frames : job.state === "done" ? 1 : 0;
  const eta = job.eta_s === null || job.eta_s === undefined ? "" : `, ETA ${fmt(job.eta_s, 0)} s`;
  $("cur-numbers").textContent = `${job.frames}${total ? " / " + total : ""} frames, ${fmt(job.fps)} fps${eta}, ` +
    `${job.faces_swapped} faces swapped`;
  $("cur-error").textContent = job.error || "";
  const finished = ["done", "cancelled", "failed"].includes(job.state);
  $("cur-cancel").disabled = finished;
  $("cur-download").disabled = !job.result;
}

async function blobUrl(path) {
  const r = await api(path);
  if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || r.statusText);
  return URL.createObjectURL(await r.blob());
}

async function showResult(job) {
  if (!job.result) return;
  $("cur-preview").src = await blobUrl(`/api/jobs/${job.id}/preview?t=0.5`);
  delete $("cur-preview").dataset.frame;
  $("cur-preview-caption").textContent = "result, at 0.5 s";
  if (job.kind === "video") {
    $("cur-video").src = await blobUrl(`/api/jobs/${job.id}/result`);
    $("cur-video").hidden = false;
  }
}

// While a job runs, the frame it encoded last, at most every 1.5 s.
let previewAt = 0;
async function runningPreview(job) {
  if (job.state !== "running" || !job.frames || Date.now() - previewAt < 1500) return;
  previewAt = Date.now();
  const r = await api(`/api/jobs/${job.id}/preview`);
  const frame = r.headers.get("X-Frame-Index");
  if (!r.ok || current !== job.id || frame === null) return;
  const img = $("cur-preview");
  if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
  img.src = URL.createObjectURL(await r.blob());
  img.dataset.frame = frame;
  $("cur-preview-caption").textContent = `frame ${frame}, as it is encoded`;
}

// SSE over fetch: EventSource cannot send the token header.
async function follow(id) {
  const r = await api(`/api/jobs/${id}/events`);
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let last = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
      if (!data) continue;
      last = JSON.parse(data);
      if (current === id) {
        showJob(last);
        runningPreview(last).catch(() => {});
      }
    }
  }
  if (last && current === id) await showResult(last);
  refresh();
}

async function refresh() {
  const { jobs } = await apiJson("/api/jobs");
  const body = $("jobs");
  body.replaceChildren();
  for (const j of jobs) {
    const tr = document.createElement("tr");
    for (const text of [j.id, j.target, j.state, j.frames, fmt(j.fps), j.error || ""]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    const td = document.createElement("td");
    const open = document.createElement("button");
    open.textContent = "open";
    open.onclick = () => { current = j.id; showJob(j); showResult(j); if (!["done", "cancelled", "failed"].includes(j.state)) follow(j.id); };
    td.append(open);
    tr.append(td);
    tr.dataset.id = j.id;
    tr.dataset.state = j.state;
    body.append(tr);
  }
}

$("job-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("form-error").textContent = "";
  const data = new FormData(event.target);
  for (const [k, v] of [...data.entries()]) if (v === "") data.delete(k);
  $("submit").disabled = true;
  try {
    const job = await apiJson("/api/jobs", { method: "POST", body: data });
    current = job.id;
    $("cur-preview").removeAttribute("src");
    $("cur-video").hidden = true;
    showJob(job);
    refresh();
    follow(job.id);
  } catch (err) {
    $("form-error").textContent = err.message;
  } finally {
    $("submit").disabled = false;
  }
});

$("cur-cancel").onclick = () => current && apiJson(`/api/jobs/${current}`, { method: "DELETE" }).then(showJob);
$("cur-download").onclick = async () => {
  const a = document.createElement("a");
  a.href = await blobUrl(`/api/jobs/${current}/result`);
  a.download = `streamswap-${current}`;
  a.click();
};

linkPages();
refresh();
setInterval(refresh, 5000);

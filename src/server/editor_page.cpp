#include "server/editor_page.hpp"

namespace udaci::server {

const std::string& editor_page_html() {
  static const std::string page = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>udaci — headlines</title>
<style>
  body { font: 16px/1.45 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
  h1 { font-size: 1.3rem; }
  textarea { width: 100%; min-height: 9rem; font: inherit; padding: .5rem; box-sizing: border-box; }
  .row { display: flex; gap: .75rem; align-items: center; margin: .6rem 0; flex-wrap: wrap; }
  input[type=password] { flex: 1; min-width: 12rem; padding: .3rem; }
  button { font: inherit; padding: .4rem 1rem; cursor: pointer; }
  ol { padding-left: 1.4rem; }
  li { margin: .4rem 0; }
  .headline { font-weight: 600; }
  .meta { color: #666; font-size: .85rem; }
  #status { color: #666; font-size: .9rem; }
  .error { color: #a00; }
</style>
</head>
<body>
<h1>Headlines from a summary</h1>
<label for="summary">Article summary</label>
<textarea id="summary" placeholder="Paste the article's summary here"></textarea>
<div class="row">
  <label for="candidates">Candidates</label>
  <select id="candidates"><option>1</option><option selected>3</option><option>5</option></select>
  <input id="key" type="password" placeholder="API key (if the server needs one)" autocomplete="off">
  <button id="go" type="button">Write headlines</button>
</div>
<div id="status" role="status"></div>
<ol id="results"></ol>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
function show(line, t0) {
  const li = document.createElement("li");
  if (line.error) {
    li.className = "error";
    li.textContent = line.error.message || "error";
  } else {
    const h = document.createElement("div");
    h.className = "headline";
    h.textContent = line.headline || "(empty)";
    const m = document.createElement("div");
    m.className = "meta";
    m.textContent = `${Math.round(performance.now() - t0)} ms in the browser · ` +
      `${Math.round(line.latency_ms || 0)} ms in the engine · ${line.completion_tokens || 0} tokens · ` +
      `${line.finish_reason || ""}`;
    li.append(h, m);
  }
  $("results").append(li);
}
async function run() {
  const summary = $("summary").value.trim();
  if (!summary) { $("status").textContent = "Paste a summary first."; return; }
  const n = Number($("candidates").value);
  $("results").replaceChildren();
  $("status").textContent = "Writing…";
  $("go").disabled = true;
  const t0 = performance.now();
  // Candidate 1 is greedy (the library's headline); the others are samples.
  const lines = [];
  for (let i = 0; i < n; i++) {
    const a = { id: String(i + 1), summary };
    if (i > 0) { a.temperature = 0.8; a.seed = i; }
    lines.push(JSON.stringify(a));
  }
  const headers = { "Content-Type": "application/x-ndjson" };
  const key = $("key").value.trim();
  if (key) headers["Authorization"] = "Bearer " + key;
  try {
    const res = await fetch("/v1/headlines", { method: "POST", headers, body: lines.join("\n") });
    if (!res.ok) {
      let msg = res.status + " " + res.statusText;
      try { msg = (await res.json()).error.message; } catch (e) { /* not JSON */ }
      throw new Error(msg);
    }
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const text = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (text) show(JSON.parse(text), t0);
      }
    }
    $("status").textContent = `Done in ${Math.round(performance.now() - t0)} ms.`;
  } catch (e) {
    $("status").textContent = "";
    show({ error: { message: String(e.message || e) } }, t0);
  } finally {
    $("go").disabled = false;
  }
}
$("go").addEventListener("click", run);
</script>
</body>
</html>
)HTML";
  return page;
}

}  // namespace udaci::server

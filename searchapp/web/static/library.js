// The library view: counts, an index run of one of its folders followed live (server-sent
// events), the files that failed and the photos kept out as low quality.
"use strict";

const indexing = { run: null, source: null };

function countRows(data) {
  const stats = data.stats;
  const perPhoto = Object.entries(stats.regions_per_photo).map(([k, v]) => `${k} ${v}`).join(", ");
  return [
    ["library", data.library],
    ["photos", String(stats.images)],
    ["regions", Object.entries(stats.regions).map(([k, v]) => `${k} ${v}`).join(", ") || "none"],
    ["per photo", `${perPhoto || "-"}; ${bytes(stats.bytes_per_photo)} on disk`],
    ["waiting for regions", String(stats.regions_pending)],
    ["set aside", String(stats.set_aside)],
    ["failed files", String(stats.failures)],
    ["encoder", stats.encoder ? `${stats.encoder.name} (dim ${stats.encoder.dim})` : "none yet"],
    ...(stats.tile_encoder
      ? [["tiles by", `${stats.tile_encoder.name} (dim ${stats.tile_encoder.dim}): image queries reach them`]]
      : []),
    ["on disk", bytes(stats.bytes_on_disk)],
  ];
}

async function loadLibrary() {
  const response = await fetch("/api/library");
  const data = await response.json();
  if (!response.ok) return setStatus(data.error, true);
  $("counts").replaceChildren(...countRows(data).map(([k, v]) => el("tr", {}, [el("td", { textContent: k }), el("td", { textContent: v })])));
  const chosen = $("index-folder").value;
  $("index-folder").replaceChildren(...data.folders.map((f) => el("option", { value: f, textContent: f })));
  if (chosen) $("index-folder").value = chosen;
  $("failures").replaceChildren(...data.failures.map((f) => el("li", { textContent: `${f.path}: ${f.reason}` })));
  if (!data.failures.length) $("failures").append(el("li", { textContent: "none" }));
  $("low-quality").replaceChildren(...data.low_quality.map((p) => el("figure", { title: p.path }, [
    el("img", { src: `/api/photos/${p.id}/thumb?size=160`, alt: p.path, loading: "lazy" }),
    el("figcaption", { textContent: `${p.path.split("/").pop()}: ${p.why}` }),
  ])));
  if (!data.low_quality.length) $("low-quality").append(el("span", { textContent: "none" }));
  const going = data.runs.find((r) => !r.finished);
  if (going && !indexing.source) follow(going.run);
}

function seconds(value) {
  if (value === null || value === undefined) return "?";
  return value < 90 ? `${Math.round(value)} s` : `${Math.floor(value / 60)} min ${Math.round(value % 60)} s`;
}

function follow(run) {
  indexing.run = run;
  $("run").hidden = false;
  $("index-stop").hidden = false;
  $("index-start").disabled = true;
  $("run-failures").replaceChildren();
  const source = new EventSource(`/api/index/${run}/events`);
  indexing.source = source;
  source.addEventListener("progress", (e) => {
    const p = JSON.parse(e.data);
    $("run-bar").max = Math.max(p.total, 1);
    $("run-bar").value = p.done;
    $("run-text").textContent = `${p.stage}: ${p.done} of ${p.total} photos, ${p.rate} photos/s, ${seconds(p.eta_seconds)} left`;
  });
  source.addEventListener("failure", (e) => {
    const f = JSON.parse(e.data);
    $("run-failures").append(el("li", { textContent: `${f.path}: ${f.reason}` }));
  });
  const finish = (text, isError) => {
    source.close();
    indexing.source = null;
    $("index-stop").hidden = true;
    $("index-start").disabled = false;
    $("run-text").textContent = text;
    setStatus(isError ? text : "", isError);
    loadLibrary();
  };
  source.addEventListener("done", (e) => {
    const s = JSON.parse(e.data).summary;
    finish(`${s.interrupted ? "stopped" : "done"}: ${s.new} new, ${s.changed} changed, ${s.moved} moved, ${s.deleted} deleted, ${s.unchanged} unchanged, ${s.failed} failed in ${s.seconds.toFixed(1)} s`, false);
  });
  source.addEventListener("error", (e) => {
    if (e.data) finish(JSON.parse(e.data).message, true); // a run's error, not a dropped connection
  });
}

async function startIndex() {
  try {
    const answer = await postJson("/api/index", { folder: $("index-folder").value });
    follow(answer.run);
  } catch (error) {
    setStatus(error.message, true);
  }
}

function showLibrary() {
  $("index-start").addEventListener("click", startIndex);
  $("index-stop").addEventListener("click", () => indexing.run && postJson(`/api/index/${indexing.run}/stop`, {}).catch((e) => setStatus(e.message, true)));
  loadLibrary();
}

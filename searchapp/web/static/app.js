// searchapp's page: search by words, by an image (chosen, dropped or pasted), by a photo or a
// part of one; results as thumbnails with the matching region's box; a viewer with every region
// (a video's in video.js).
// Everything shown is set as text or as a DOM attribute, never parsed as HTML.
"use strict";

const PAGE = 50;
const FIELDS = ["q", "minus", "kind", "sort", "after", "before", "folder", "camera", "min_width", "min_score"];
const EXTRA = ["like", "like_id", "minus_like", "minus_id", "photo", "box"]; // set by "more like this", a drawn box or an address
const $ = (id) => document.getElementById(id);
const ROW = 232; // px a row of cards takes, gap included
const CARD_MIN = 180; // px, the narrowest a card gets
const GAP = 10;
// a card shows its photo at most 180 px high: a thumbnail twice that on a high-density screen
const THUMB_SIZE = window.devicePixelRatio > 1 ? 320 : 160;
const state = { params: null, image: null, hits: [], total: 0, known: 0, pages: new Map(), nodes: new Map(), query: 0 };

function el(tag, props = {}, children = []) {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of children) node.append(child);
  return node;
}

// "2021-05-15 18:12" in the viewer's time zone: the form the grid and the CLI show dates in
function isoTime(seconds) {
  const d = new Date(seconds * 1000);
  const two = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}`;
}

function bytes(count) {
  if (count < 1024) return `${count} B`;
  if (count < 1048576) return `${(count / 1024).toFixed(0)} KiB`;
  return `${(count / 1048576).toFixed(count < 10485760 ? 2 : 1)} MiB`;
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function formParams() {
  const params = new URLSearchParams();
  for (const name of FIELDS) {
    const value = $(name).value.trim();
    if (value && !(name === "kind" && value === "any") && !(name === "sort" && value === "score")) {
      params.set(name, value);
    }
  }
  return params;
}

function showParams(params) {
  for (const name of FIELDS) $(name).value = params.get(name) || { kind: "any", sort: "score" }[name] || "";
  if (["minus", "after", "before", "folder", "camera", "min_width", "min_score"].some((n) => params.get(n))) $("filters").open = true;
}

async function fetchPage(offset) {
  const params = new URLSearchParams(state.params);
  params.set("k", PAGE);
  params.set("offset", offset);
  params.set("inline", THUMB_SIZE); // thumbnails made already come with the answer
  let response;
  if (state.image) {
    const body = new FormData();
    for (const [name, value] of params) body.append(name, value);
    body.append("image", state.image, state.image.name || "pasted.png");
    response = await fetch("/api/search", { method: "POST", body });
  } else {
    response = await fetch("/api/search?" + params);
  }
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || response.statusText);
  return answer;
}

async function search(params, image = null, push = true) {
  Object.assign(state, { params, image, hits: [], total: null, estimate: null, known: 0, pages: new Map(), query: state.query + 1, took: null });
  for (const node of state.nodes.values()) node.remove();
  state.nodes.clear();
  $("notes").replaceChildren();
  if (push) history.pushState(null, "", params.toString() ? "?" + params : "/");
  const query = $("query-image");
  query.hidden = !image;
  if (image) query.querySelector("img").src = URL.createObjectURL(image);
  if (!image && ![...params.keys()].some((k) => k === "q" || EXTRA.includes(k))) {
    state.total = 0;
    setStatus("Type words, or drop a photo on the page, to search the library.");
    return render();
  }
  setStatus("searching...");
  window.scrollTo(0, 0);
  await loadPage(0);
}

// The grid is virtual: only the rows on screen (and a few around) are in the page, placed
// absolutely in a container as tall as all the results, so that scrolling stays smooth past
// 100,000 of them. Pages of results are fetched as their rows come near the screen.
async function loadPage(page) {
  if (state.pages.has(page)) return;
  const query = state.query;
  state.pages.set(page, "loading");
  try {
    const started = performance.now();
    const answer = await fetchPage(page * PAGE);
    if (query !== state.query) return; // a newer search replaced this one
    answer.results.forEach((hit, i) => (state.hits[page * PAGE + i] = hit));
    state.pages.set(page, "done");
    state.known = Math.max(state.known, page * PAGE + answer.results.length);
    if (answer.total !== null) state.total = answer.total;
    else if (page === 0) state.estimate = answer.estimate;
    else if (answer.results.length < PAGE) state.total = state.known;
    if (page === 0) {
      for (const note of answer.notes) $("notes").append(el("li", { textContent: note }));
      state.took = Math.round(performance.now() - started);
      state.checked = answer.checked;
      state.ranking = answer.mode === "vector" ? answer.ranking : null;
    }
    showCount();
    render();
  } catch (error) {
    if (query !== state.query) return;
    state.total = state.known;
    setStatus(error.message, true);
  }
}

function showCount() {
  const count = state.total !== null ? String(state.total) : state.estimate ? `about ${state.estimate}` : `${state.known}+`;
  const checked = state.checked ? `; the top ${state.checked} checked against the query's pixels` : "";
  setStatus(state.total === 0 ? "no results: nothing matched" : `${count} photos (${state.took} ms)${checked}`);
}

function layout() {
  const width = $("grid").clientWidth;
  const columns = Math.max(1, Math.floor((width + GAP) / (CARD_MIN + GAP)));
  return { columns, cardWidth: (width - GAP * (columns - 1)) / columns };
}

let rendering = false;
function render() {
  if (rendering) return;
  rendering = true;
  requestAnimationFrame(() => {
    rendering = false;
    const { columns, cardWidth } = layout();
    const count = state.total !== null ? state.total : Math.max(state.estimate || 0, state.known + PAGE);
    $("grid").style.height = Math.ceil(count / columns) * ROW + "px";
    const top = window.scrollY - ($("grid").getBoundingClientRect().top + window.scrollY);
    const firstRow = Math.max(0, Math.floor(top / ROW) - 2);
    const lastRow = Math.floor((top + window.innerHeight) / ROW) + 2;
    const first = firstRow * columns;
    const last = Math.min(count, (lastRow + 1) * columns);
    for (const [index, node] of state.nodes) {
      if (index < first || index >= last) node.remove(), state.nodes.delete(index);
    }
    for (let index = first; index < last; index++) {
      const hit = state.hits[index];
      if (!hit) {
        loadPage(Math.floor(index / PAGE));
        continue;
      }
      let node = state.nodes.get(index);
      if (!node) $("grid").append((node = card(hit, index))), state.nodes.set(index, node);
      Object.assign(node.style, {
        left: (index % columns) * (cardWidth + GAP) + "px",
        top: Math.floor(index / columns) * ROW + "px",
        width: cardWidth + "px",
      });
    }
  });
}

function boxNode(bbox, size, text, win) {
  const [w, h] = size;
  const node = el("div", { className: "box" + (win ? " win" : "") });
  Object.assign(node.style, {
    left: (100 * bbox[0]) / w + "%", top: (100 * bbox[1]) / h + "%",
    width: (100 * (bbox[2] - bbox[0])) / w + "%", height: (100 * (bbox[3] - bbox[1])) / h + "%",
  });
  if (text) node.append(el("span", { textContent: text }));
  return node;
}

function card(hit, index) {
  const fit = el("div", { className: "fit" }, [el("img", { src: hit.thumb_data || thumbUrl(hit, THUMB_SIZE), alt: hit.path })]);
  const region = hit.region;
  const whole = region.bbox[0] === 0 && region.bbox[1] === 0 && region.bbox[2] === hit.size[0] && region.bbox[3] === hit.size[1];
  if (!whole) fit.append(boxNode(region.bbox, hit.size, region.label || region.kind, true));
  const thumb = el("div", { className: "thumb" }, [fit]);
  if (hit.verified) thumb.append(el("span", { className: "badge", textContent: hit.verified, title: `confirmed by the ${hit.verified}` }));
  if (hit.time != null) thumb.append(el("span", { className: "clock", textContent: `\u25B6 ${clock(hit.time)}`, title: "a video: the moment that matched" }));
  const caption = el("div", { className: "caption" }, [
    el("span", { textContent: hit.score.toFixed(3), title: "score" }),
    el("span", { className: "path", textContent: hit.path.split("/").pop(), title: hit.path }),
    el("span", { textContent: hit.date.slice(0, 10) }),
  ]);
  const node = el("div", { className: "card", tabIndex: 0 }, [thumb, caption]);
  node.dataset.id = hit.id;
  node.dataset.index = index;
  node.addEventListener("click", () => openViewer(hit));
  node.addEventListener("keydown", (e) => e.key === "Enter" && openViewer(hit));
  return node;
}

// ---- the viewer -------------------------------------------------------------------------

let viewing = null;

async function openViewer(hit) {
  const response = await fetch(`/api/photos/${hit.id}`);
  const photo = await response.json();
  if (!response.ok) return setStatus(photo.error, true);
  viewing = photo;
  $("viewer").hidden = false;
  const video = photo.video;
  document.querySelector(".frame").hidden = !!video;
  $("movie").hidden = !video;
  $("drag-hint").hidden = !!video;
  if (video) showVideo(photo, hit);
  else $("large").src = `${photo.thumb}?size=1280`;
  $("name").textContent = photo.path;
  const region = hit.region;
  const verdict = hit.verified ? `, confirmed by the ${hit.verified}` : "";
  const when = hit.time != null ? ` at ${clock(hit.time)}` : "";
  $("why").textContent = `matched${when} by its ${region.kind}${region.label ? " (" + region.label + ")" : ""}, score ${hit.score.toFixed(3)}${verdict}`;
  const boxed = (r) => r.kind === "object"; // scenes, tiles and frames are drawn otherwise
  const boxes = photo.regions.filter(boxed).map((r) => boxNode(r.bbox, photo.size, r.label || r.kind, false));
  const same = (r) => r.bbox.every((v, i) => v === region.bbox[i]) && r.time === (hit.time ?? null);
  if (region.kind !== "scene" && region.kind !== "frame") boxes.push(boxNode(region.bbox, photo.size, "match", true));
  $("boxes").replaceChildren(...boxes);
  $("heat").replaceChildren();
  $("heat-toggle").hidden = !state.ranking || !!video;
  if (state.ranking && !video) drawHeat(photo, hit, state.ranking);
  showCopies(photo);
  const rows = [
    ["date", isoTime(photo.taken_at) + ({ exif: "", video: " (from the video)" }[photo.taken_source] ?? " (file time)")],
    ["size", `${photo.size[0]} x ${photo.size[1]}, ${photo.format}, ${bytes(photo.bytes)}`],
    ...(video ? [["video", `${clock(video.duration)}, ${video.frame_rate ? video.frame_rate.toFixed(video.frame_rate % 1 ? 2 : 0) + " fps, " : ""}${video.codec}`]] : []),
    ["camera", photo.camera || "-"],
    ["place", photo.gps ? photo.gps.map((v) => v.toFixed(5)).join(", ") : "-"],
    ["labels", photo.labels.map((l) => `${l.name.split(",")[0]} ${l.prob.toFixed(2)}`).join("; ") || "-"],
  ];
  $("meta").replaceChildren(...rows.map(([k, v]) => el("tr", {}, [el("td", { textContent: k }), el("td", { textContent: v })])));
  const listed = photo.regions.filter((r) => r.kind !== "tile" || same(r));
  const where = (r) => (r.time != null ? clock(r.time) : `[${r.bbox.join(", ")}]`);
  $("regions").replaceChildren(...listed.map((r) => el("li", { className: same(r) && r.kind === region.kind ? "win" : "", textContent: `${r.kind} ${where(r)}${r.label ? " " + r.label : ""}` })));
}

// Where in the photo the query matched: a grid of cells over the photo, each as warm as the
// tiles covering it score against the search's vector on average (a large tile that holds the
// match scores well everywhere it reaches; the small ones beside the match do not), relative to
// the photo's other cells. The weaker half of that range stays clear.
const HEAT_CELLS = 48; // across the photo's longer side
async function drawHeat(photo, hit, ranking) {
  const response = await fetch(`/api/rankings/${ranking}/photos/${photo.id}/regions`);
  const answer = await response.json();
  if (!response.ok || !viewing || viewing.id !== photo.id) return;
  const tiles = answer.regions.filter((r) => r.kind === "tile");
  if (!tiles.length) return;
  const [width, height] = photo.size;
  const cell = Math.max(width, height) / HEAT_CELLS;
  const [columns, rows] = [Math.ceil(width / cell), Math.ceil(height / cell)];
  const canvas = el("canvas", { id: "heat-canvas", width: columns, height: rows });
  const sums = new Float32Array(columns * rows);
  const counts = new Uint16Array(columns * rows);
  for (const { bbox, score } of tiles) {
    for (let row = Math.floor(bbox[1] / cell); row < Math.min(rows, Math.ceil(bbox[3] / cell)); row++) {
      for (let column = Math.floor(bbox[0] / cell); column < Math.min(columns, Math.ceil(bbox[2] / cell)); column++) {
        sums[row * columns + column] += score;
        counts[row * columns + column] += 1;
      }
    }
  }
  const values = sums.map((sum, i) => (counts[i] ? sum / counts[i] : NaN));
  const covered = values.filter((v) => !Number.isNaN(v));
  const [low, high] = [Math.min(...covered), Math.max(...covered)];
  const pixels = new ImageData(columns, rows);
  values.forEach((value, i) => {
    const t = high > low && !Number.isNaN(value) ? (value - low) / (high - low) : 0;
    const warmth = Math.max(0, (t - 0.5) / 0.5); // the weaker half of the range stays clear
    pixels.data.set([255, 90, 0, Math.round(170 * warmth * warmth)], 4 * i);
  });
  canvas.getContext("2d").putImageData(pixels, 0, 0);
  $("heat").replaceChildren(canvas);
  $("heat").hidden = !$("show-heat").checked;
}

// The photo's duplicate group, if it is in one: the other copies, how each pair was found,
// and the one `dupes` would keep.
async function showCopies(photo) {
  $("copies").replaceChildren(el("li", { textContent: "looking..." }));
  const response = await fetch(`/api/dupes/of/${photo.id}`);
  const answer = await response.json();
  if (!viewing || viewing.id !== photo.id) return;
  if (!response.ok) return $("copies").replaceChildren(el("li", { textContent: answer.error }));
  const items = answer.groups.flatMap((group) =>
    group.pairs
      .filter((pair) => pair.a === photo.path || pair.b === photo.path)
      .map((pair) => {
        const other = pair.a === photo.path ? pair.b : pair.a;
        const keep = other === group.keep ? " (the one to keep)" : "";
        return el("li", { title: other, textContent: `${pair.tier}: ${other.split("/").pop()}${keep}; ${pair.reason.replace(/^\w+: /, "")}` });
      })
  );
  $("copies").replaceChildren(...(items.length ? items : [el("li", { textContent: "none found" })]));
}

function closeViewer() {
  if (viewing && viewing.video) stopVideo();
  $("viewer").hidden = true;
  $("drawn").hidden = true;
  viewing = null;
}

function drawBox() {
  const frame = document.querySelector(".frame");
  let start = null;
  const point = (e) => {
    const rect = $("large").getBoundingClientRect();
    return [Math.min(Math.max(e.clientX - rect.left, 0), rect.width), Math.min(Math.max(e.clientY - rect.top, 0), rect.height), rect];
  };
  frame.addEventListener("mousedown", (e) => { e.preventDefault(); start = point(e); });
  window.addEventListener("mousemove", (e) => {
    if (!start) return;
    const [x, y] = point(e);
    Object.assign($("drawn").style, { left: Math.min(x, start[0]) + "px", top: Math.min(y, start[1]) + "px", width: Math.abs(x - start[0]) + "px", height: Math.abs(y - start[1]) + "px" });
    $("drawn").hidden = false;
  });
  window.addEventListener("mouseup", (e) => {
    if (!start || !viewing) return (start = null);
    const [x, y, rect] = point(e);
    const [x0, y0] = start;
    start = null;
    if (Math.abs(x - x0) < 8 || Math.abs(y - y0) < 8) return ($("drawn").hidden = true);
    const scale = viewing.size[0] / rect.width; // displayed photo pixels per screen pixel
    const box = [Math.min(x0, x), Math.min(y0, y), Math.max(x0, x), Math.max(y0, y)].map((v) => Math.round(v * scale));
    const params = new URLSearchParams({ photo: viewing.id, box: box.join(",") });
    const kind = $("kind").value;
    if (kind !== "any") params.set("kind", kind);
    closeViewer();
    $("q").value = "";
    search(params);
  });
}

// ---- wiring -----------------------------------------------------------------------------

function imageFrom(items) {
  for (const item of items || []) {
    const file = item instanceof File ? item : item.kind === "file" ? item.getAsFile() : null;
    if (file && file.type.startsWith("image/")) return file;
  }
  return null;
}

window.addEventListener("DOMContentLoaded", () => {
  const view = { "/dupes": "dupes", "/library": "library", "/map": "map" }[location.pathname] || "search";
  for (const name of ["search", "dupes", "library", "map"]) $(name + "-view").hidden = view !== name;
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("here", a.dataset.view === view));
  $("search").addEventListener("submit", (e) => {
    e.preventDefault();
    if (view !== "search") return (location.href = "/?" + formParams());
    search(formParams(), state.image && !$("query-image").hidden ? state.image : null);
  });
  $("file").addEventListener("change", () => $("file").files[0] && search(formParams(), $("file").files[0]));
  $("clear-image").addEventListener("click", () => { $("file").value = ""; search(formParams(), null); });
  document.addEventListener("paste", (e) => {
    if (view !== "search") return;
    const image = imageFrom(e.clipboardData && e.clipboardData.items);
    if (image) { e.preventDefault(); search(formParams(), image); }
  });
  document.addEventListener("dragover", (e) => { e.preventDefault(); document.body.classList.add("dragging"); });
  document.addEventListener("dragleave", () => document.body.classList.remove("dragging"));
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    document.body.classList.remove("dragging");
    if (view !== "search") return;
    const image = imageFrom(e.dataTransfer && e.dataTransfer.files);
    if (image) search(formParams(), image);
    else setStatus("drop a photo file (JPEG, PNG, ...) to search with it", true);
  });
  $("close").addEventListener("click", closeViewer);
  $("viewer").addEventListener("click", (e) => e.target === $("viewer") && closeViewer());
  document.addEventListener("keydown", (e) => e.key === "Escape" && closeViewer());
  $("show-heat").addEventListener("change", () => ($("heat").hidden = !$("show-heat").checked));
  $("less-like").addEventListener("click", () => {
    const params = new URLSearchParams(state.params);
    params.append("minus_id", viewing.id);
    closeViewer();
    search(params, state.image);
  });
  $("more-like").addEventListener("click", () => {
    const params = new URLSearchParams({ like_id: viewing.id });
    closeViewer();
    $("q").value = "";
    search(params);
  });
  drawBox();
  wireVideo();
  window.addEventListener("scroll", render, { passive: true });
  window.addEventListener("resize", render);
  const fromAddress = () => {
    const params = new URLSearchParams(location.search);
    params.delete("token");
    showParams(params);
    search(params, null, false);
  };
  if (view === "dupes") return showDupes();
  if (view === "library") return showLibrary();
  if (view === "map") return showMap();
  window.addEventListener("popstate", fromAddress);
  fromAddress();
});

// The duplicates view: every group as a list, or one group at a time with keys; each copy
// shows only the facts that differ in its group; the others move away, journalled, with undo.
"use strict";

const dupes = { groups: [], current: 0, review: false, journal: null };

const FACTS = {
  folder: (p) => p.path.slice(0, p.path.lastIndexOf("/")) || "/",
  bytes: (p) => bytes(p.bytes),
  size: (p) => `${p.size[0]} x ${p.size[1]}`,
  format: (p) => p.format,
  date: (p) => isoTime(p.taken_at),
  camera: (p) => p.camera || "-",
};

function differing(photos) {
  return Object.keys(FACTS).filter((name) => new Set(photos.map(FACTS[name])).size > 1);
}

async function postJson(url, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || response.statusText);
  return answer;
}

// The end of a path that tells it from the other paths of its group: the name, or as many
// folders above it as it takes.
function shortName(path, paths) {
  const parts = path.split("/");
  for (let keep = 1; keep < parts.length; keep++) {
    const tail = parts.slice(-keep).join("/");
    if (paths.filter((p) => p === tail || p.endsWith("/" + tail)).length === 1) return tail;
  }
  return path;
}

function groupNode(group, index) {
  const facts = differing(group.photos);
  const copies = group.photos.map((photo, i) => {
    const keep = photo.path === group.keep;
    const list = el("dl", {}, facts.flatMap((name) => [el("dt", { textContent: name }), el("dd", { textContent: FACTS[name](photo) })]));
    const node = el("div", { className: "copy" + (keep ? " keep" : ""), title: photo.path }, [
      el("div", { className: "role", textContent: `${i + 1}. ${keep ? "keep" : "move away"}` }),
      el("img", { src: `/api/photos/${photo.id}/thumb?size=${dupes.review ? 640 : 320}`, alt: photo.path, loading: "lazy" }),
      el("div", { textContent: shortName(photo.path, group.paths) }),
      list,
    ]);
    node.addEventListener("click", () => chooseKeep(index, i));
    return node;
  });
  const idOf = Object.fromEntries(group.photos.map((p) => [p.path, p.id]));
  const pairs = group.pairs.map((pair) => {
    const item = el("li", {}, [
      el("span", { className: "tier " + pair.tier, textContent: pair.tier }),
      ` ${shortName(pair.a, group.paths)} ~ ${shortName(pair.b, group.paths)}: ${pair.reason.replace(/^\w+: /, "")} `,
    ]);
    // exact pairs have no difference to show; two videos' evidence is their matched frames
    if ((pair.tier === "near" || pair.tier === "crop") && pair.offset === undefined) {
      const show = el("button", { type: "button", className: "difference", textContent: "difference" });
      show.title = "the second aligned onto the first: black where the pixels agree, bright where they differ";
      show.addEventListener("click", () => {
        const shown = item.querySelector("img");
        if (shown) return shown.remove();
        item.append(el("img", { className: "difference-image", src: `/api/dupes/difference?a=${idOf[pair.a]}&b=${idOf[pair.b]}`, alt: "aligned difference" }));
      });
      item.append(show);
    }
    return item;
  });
  const others = group.photos.length - 1;
  const move = el("button", { type: "button", textContent: `move the other ${others === 1 ? "copy" : others + " copies"} (${bytes(group.bytes_freed)})` });
  move.addEventListener("click", () => moveGroup(index));
  const head = el("div", { className: "head" }, [el("strong", { textContent: `group ${index + 1} of ${dupes.groups.length}` }), el("span", { textContent: group.why }), move]);
  const node = el("div", { className: "group" + (group.moved ? " moved" : "") + (index === dupes.current ? " current" : "") }, [head, el("div", { className: "photos" }, copies), el("ul", { className: "pairs" }, pairs)]);
  node.dataset.index = index;
  if (group.moved) move.disabled = true;
  return node;
}

function drawGroups() {
  $("groups").classList.toggle("review", dupes.review);
  $("review").textContent = dupes.review ? "list all groups" : "review one at a time";
  $("review-keys").hidden = !dupes.review;
  $("groups").replaceChildren(...dupes.groups.map(groupNode));
  const left = dupes.groups.filter((g) => !g.moved);
  const sure = left.filter((g) => g.confirmed);
  const freed = left.reduce((sum, g) => sum + g.bytes_freed, 0);
  $("dupes-summary").textContent = `${left.length} groups, ${left.reduce((n, g) => n + g.photos.length - 1, 0)} copies, ${bytes(freed)} to free`;
  $("accept-all").textContent = `move all confirmed (${sure.length} groups)`;
  $("accept-all").disabled = sure.length === 0;
}

function chooseKeep(index, photoIndex) {
  const group = dupes.groups[index];
  if (group.moved) return;
  group.keep = group.photos[photoIndex].path;
  group.bytes_freed = group.photos.filter((p) => p.path !== group.keep).reduce((sum, p) => sum + p.bytes, 0);
  drawGroups();
}

async function moveGroups(indexes) {
  const ids = indexes.flatMap((i) => dupes.groups[i].photos.filter((p) => p.path !== dupes.groups[i].keep).map((p) => p.id));
  const folder = $("move-to").value.trim();
  if (!confirm(`Move ${ids.length} ${ids.length === 1 ? "photo" : "photos"} to ${folder}? Undo puts them back.`)) return;
  try {
    const answer = await postJson("/api/dupes/move", { ids, folder });
    for (const i of indexes) dupes.groups[i].moved = true;
    dupes.journal = answer.journal;
    $("undo-text").textContent = `moved ${answer.moved.length} to ${folder}` + (answer.not_moved.length ? `; ${answer.not_moved.length} could not move: ${answer.not_moved[0].why}` : "");
    $("undo-bar").hidden = !answer.journal;
    setStatus("");
    drawGroups();
  } catch (error) {
    setStatus(error.message, true);
  }
}

function moveGroup(index) {
  moveGroups([index]).then(() => dupes.review && step(1));
}

async function undoMove() {
  try {
    const answer = await postJson("/api/dupes/undo", { journal: dupes.journal });
    dupes.journal = null;
    $("undo-bar").hidden = true;
    await loadDupes(false);
    setStatus(`moved ${answer.moved.length} back`); // once the groups show them back
  } catch (error) {
    setStatus(error.message, true);
  }
}

function step(by) {
  dupes.current = Math.min(Math.max(dupes.current + by, 0), Math.max(dupes.groups.length - 1, 0));
  drawGroups();
}

async function loadDupes(resetStatus = true) {
  if (resetStatus) setStatus("looking for duplicates...");
  const response = await fetch("/api/dupes");
  const answer = await response.json();
  if (!response.ok) return setStatus(answer.error, true);
  dupes.groups = answer.groups;
  dupes.current = Math.min(dupes.current, Math.max(answer.groups.length - 1, 0));
  if (!$("move-to").value) $("move-to").value = answer.move_to;
  if (resetStatus) setStatus(answer.groups.length ? "" : "no duplicates in this library");
  drawGroups();
}

function dupesKeys(e) {
  if ($("dupes-view").hidden || !dupes.review || e.target.tagName === "INPUT") return;
  const group = dupes.groups[dupes.current];
  if (e.key === "ArrowRight" || e.key === "n" || e.key === "s") step(1);
  else if (e.key === "ArrowLeft" || e.key === "p") step(-1);
  else if (e.key === "m" && group && !group.moved) moveGroup(dupes.current);
  else if (e.key === "Escape") { dupes.review = false; drawGroups(); }
  else if (/^[1-9]$/.test(e.key) && group && Number(e.key) <= group.photos.length) chooseKeep(dupes.current, Number(e.key) - 1);
  else return;
  e.preventDefault();
}

function showDupes() {
  $("review").addEventListener("click", () => { dupes.review = !dupes.review; drawGroups(); });
  $("accept-all").addEventListener("click", () => moveGroups(dupes.groups.map((g, i) => (g.confirmed && !g.moved ? i : -1)).filter((i) => i >= 0)));
  $("undo").addEventListener("click", undoMove);
  document.addEventListener("keydown", dupesKeys);
  loadDupes();
}

// A video in the viewer: a <video> that starts at the hit's moment, and under it a strip as wide
// as the picture with a cell per sampled frame, as tall and warm as that frame scores against
// the query (the same scores the search gave), from its time to the next frame's. The hit's best
// moments are pinned above it; a click on the strip seeks there.
"use strict";

// "01:06.4", "1:02:05.0" from an hour: the CLI's way of writing a frame's time (records.clock)
function clock(seconds) {
  const tenths = Math.round(Math.max(0, seconds) * 10);
  const totalMinutes = Math.floor(tenths / 600);
  const hours = Math.floor(totalMinutes / 60);
  const rest = `${String(totalMinutes % 60).padStart(2, "0")}:${((tenths - totalMinutes * 600) / 10).toFixed(1).padStart(4, "0")}`;
  return hours ? `${hours}:${rest}` : rest;
}

function thumbUrl(hit, size) {
  return `${hit.thumb}${hit.thumb.includes("?") ? "&" : "?"}size=${size}`;
}

function showVideo(photo, hit) {
  const clip = $("clip");
  const start = hit.time || 0;
  // the viewer's size for the picture's shape, so that the strip below is exactly as wide
  $("movie").style.setProperty("--aspect", photo.size[0] / photo.size[1]);
  clip.dataset.start = start;
  clip.onloadedmetadata = () => (clip.currentTime = Math.min(start, clip.duration || start));
  clip.src = photo.image;
  $("strip").replaceChildren($("playhead"));
  drawStrip(photo, hit);
}

function stopVideo() {
  const clip = $("clip");
  clip.onloadedmetadata = null;
  clip.pause();
  clip.removeAttribute("src");
  clip.load(); // lets go of the file
}

async function drawStrip(photo, hit) {
  const duration = photo.video.duration || 1;
  const frames = photo.regions.filter((r) => r.kind === "frame").sort((a, b) => a.time - b.time);
  let scores = null; // a search by labels scores no frames: its strip shows where they are
  if (state.ranking) {
    const response = await fetch(`/api/rankings/${state.ranking}/photos/${photo.id}/regions`);
    const answer = await response.json();
    if (!viewing || viewing.id !== photo.id) return;
    if (response.ok) scores = new Map(answer.regions.map((r) => [r.id, r.score]));
  }
  const known = scores ? frames.map((f) => scores.get(f.id)).filter((s) => s !== undefined) : [];
  const [low, high] = [Math.min(...known), Math.max(...known)];
  const moments = new Set((hit.moments || []).map((m) => m.time));
  const cells = frames.map((frame, i) => {
    const until = i + 1 < frames.length ? frames[i + 1].time : duration;
    const score = scores ? scores.get(frame.id) : undefined;
    const t = score === undefined ? 0.5 : high > low ? (score - low) / (high - low) : 1;
    const cell = el("div", { className: "mark", title: clock(frame.time) + (score === undefined ? "" : `, score ${score.toFixed(3)}`) });
    cell.classList.toggle("moment", moments.has(frame.time));
    cell.classList.toggle("best", frame.time === hit.time);
    cell.dataset.time = frame.time;
    Object.assign(cell.style, {
      left: (100 * frame.time) / duration + "%",
      width: (100 * Math.max(0, until - frame.time)) / duration + "%",
      height: 15 + 85 * t + "%",
      background: `hsl(${215 - 190 * t}, 85%, ${38 + 14 * t}%)`,
    });
    return cell;
  });
  const pins = [...moments].map((time) => {
    const pin = el("span", { className: "pin" + (time === hit.time ? " best" : ""), textContent: "\u25BC", title: `a best moment: ${clock(time)}` });
    pin.dataset.time = time;
    pin.style.left = (100 * time) / duration + "%";
    return pin;
  });
  $("strip").replaceChildren(...cells, ...pins, $("playhead"));
  movePlayhead();
}

function movePlayhead() {
  const clip = $("clip");
  const duration = (viewing && viewing.video && viewing.video.duration) || clip.duration || 1;
  $("playhead").style.left = (100 * Math.min(clip.currentTime, duration)) / duration + "%";
}

function wireVideo() {
  const clip = $("clip");
  clip.addEventListener("timeupdate", movePlayhead);
  clip.addEventListener("seeked", movePlayhead);
  $("strip").addEventListener("click", (e) => {
    if (!viewing || !viewing.video) return;
    const pin = e.target.closest(".pin");
    const rect = $("strip").getBoundingClientRect();
    const share = Math.min(Math.max((e.clientX - rect.left) / rect.width, 0), 1);
    clip.currentTime = pin ? Number(pin.dataset.time) : share * viewing.video.duration;
  });
}

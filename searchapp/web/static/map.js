// The collection map: every point drawn by WebGL in one call, pan by dragging, zoom with the
// wheel, hover for the thumbnail, click to open the photo, shift-drag a lasso to list (or, in
// the web app, filter by) the selected paths. Used by the HTML file `searchapp map` writes and
// by the web app's map view; both hand it the same data (window.SEARCHAPP_MAP, or fetched).
"use strict";

(function () {
  const INTERACTIVE_POINTS = 100000; // drawn while panning; all of them once the view rests
  const REST_MS = 150;
  const HOVER_PX = 8;
  const PALETTE = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
  ];

  // an absolute path as a file: URL, each name percent-encoded (a "#" or "?" in a name stays)
  function fileUrl(path) {
    return "file://" + path.split("/").map(encodeURIComponent).join("/");
  }

  function decodeFloats(b64) {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    return new Float32Array(bytes.buffer);
  }

  function decodeUint16(b64) {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    return new Uint16Array(bytes.buffer);
  }

  function hexColour(hex) {
    const n = parseInt(hex.slice(1), 16);
    return [(n >> 16) / 255, ((n >> 8) & 255) / 255, (n & 255) / 255];
  }

  // A uniform grid over data space: hover looks in the cells around the cursor only.
  function buildGrid(xs, ys, cells) {
    const n = xs.length;
    const counts = new Uint32Array(cells * cells + 1);
    const cellOf = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      const cx = Math.min(cells - 1, Math.max(0, Math.floor(((xs[i] + 1) / 2) * cells)));
      const cy = Math.min(cells - 1, Math.max(0, Math.floor(((ys[i] + 1) / 2) * cells)));
      cellOf[i] = cy * cells + cx;
      counts[cellOf[i] + 1]++;
    }
    for (let c = 1; c <= cells * cells; c++) counts[c] += counts[c - 1];
    const order = new Uint32Array(n);
    const fill = counts.slice(0, cells * cells);
    for (let i = 0; i < n; i++) order[fill[cellOf[i]]++] = i;
    return { cells, starts: counts, order };
  }

  function compile(gl, type, source) {
    const shader = gl.createShader(type);
    gl.shaderSource(shader, source);
    gl.compileShader(shader);
    if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) {
      throw new Error(gl.getShaderInfoLog(shader));
    }
    return shader;
  }

  const VERTEX = `
    attribute vec2 position;
    attribute float category;
    attribute float selected;
    uniform vec2 scale;
    uniform vec2 offset;
    uniform float size;
    uniform sampler2D palette;
    uniform float paletteSize;
    uniform float anySelected;
    varying vec4 colour;
    void main() {
      gl_Position = vec4(position * scale + offset, 0.0, 1.0);
      gl_PointSize = size * (anySelected > 0.5 && selected > 0.5 ? 1.6 : 1.0);
      vec3 rgb = texture2D(palette, vec2((category + 0.5) / paletteSize, 0.5)).rgb;
      float alpha = anySelected > 0.5 && selected < 0.5 ? 0.15 : 0.85;
      colour = vec4(rgb, alpha);
    }`;
  const FRAGMENT = `
    precision mediump float;
    varying vec4 colour;
    void main() {
      vec2 d = gl_PointCoord - vec2(0.5);
      if (dot(d, d) > 0.25) discard;
      gl_FragColor = colour;
    }`;

  function createMap(root, data, options) {
    options = options || {};
    const xs = decodeFloats(data.x);
    const ys = decodeFloats(data.y);
    const categories = decodeUint16(data.category);
    const n = xs.length;
    root.classList.add("sa-map");
    root.innerHTML = "";
    const canvas = document.createElement("canvas");
    const overlay = document.createElement("canvas");
    const tip = document.createElement("div");
    const legend = document.createElement("div");
    const panel = document.createElement("div");
    canvas.className = "sa-map-gl";
    overlay.className = "sa-map-overlay";
    tip.className = "sa-map-tip";
    legend.className = "sa-map-legend";
    panel.className = "sa-map-selection";
    tip.hidden = true;
    panel.hidden = true;
    root.append(canvas, overlay, tip, legend, panel);

    const gl = canvas.getContext("webgl", { antialias: false, preserveDrawingBuffer: true });
    if (!gl) {
      root.textContent = "This browser has no WebGL: the map cannot be drawn.";
      return null;
    }
    const program = gl.createProgram();
    gl.attachShader(program, compile(gl, gl.VERTEX_SHADER, VERTEX));
    gl.attachShader(program, compile(gl, gl.FRAGMENT_SHADER, FRAGMENT));
    gl.linkProgram(program);
    gl.useProgram(program);

    const interleaved = new Float32Array(n * 2);
    for (let i = 0; i < n; i++) {
      interleaved[2 * i] = xs[i];
      interleaved[2 * i + 1] = ys[i];
    }
    function attribute(name, array, size) {
      const buffer = gl.createBuffer();
      gl.bindBuffer(gl.ARRAY_BUFFER, buffer);
      gl.bufferData(gl.ARRAY_BUFFER, array, gl.STATIC_DRAW);
      const where = gl.getAttribLocation(program, name);
      gl.enableVertexAttribArray(where);
      gl.vertexAttribPointer(where, size, gl.FLOAT, false, 0, 0);
      return buffer;
    }
    attribute("position", interleaved, 2);
    attribute("category", Float32Array.from(categories), 1);
    const selectedFlags = new Float32Array(n);
    const selectedBuffer = attribute("selected", selectedFlags, 1);

    const linkOf = (i) => (data.links && data.links[i]) || fileUrl(data.paths[i]);
    const names = data.categories;
    // "other" and the clusters' "noise" are grey; the rest take the palette in order
    const greys = new Set(data.greys || []);
    const colours = [];
    names.forEach((_, i) => colours.push(greys.has(i) ? "#b5b5b5" : PALETTE[(i - [...greys].filter((g) => g < i).length) % PALETTE.length]));
    const colourOf = (i) => colours[i];
    const paletteSize = Math.max(1, names.length);
    const paletteBytes = new Uint8Array(paletteSize * 4);
    names.forEach((_, i) => {
      const rgb = hexColour(colourOf(i));
      paletteBytes.set([rgb[0] * 255, rgb[1] * 255, rgb[2] * 255, 255], i * 4);
    });
    const texture = gl.createTexture();
    gl.bindTexture(gl.TEXTURE_2D, texture);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, paletteSize, 1, 0, gl.RGBA, gl.UNSIGNED_BYTE, paletteBytes);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
    gl.uniform1f(gl.getUniformLocation(program, "paletteSize"), paletteSize);
    gl.enable(gl.BLEND);
    gl.blendFunc(gl.SRC_ALPHA, gl.ONE_MINUS_SRC_ALPHA);

    const where = {
      scale: gl.getUniformLocation(program, "scale"),
      offset: gl.getUniformLocation(program, "offset"),
      size: gl.getUniformLocation(program, "size"),
      anySelected: gl.getUniformLocation(program, "anySelected"),
    };
    const view = { zoom: 0.92, cx: 0, cy: 0 };
    const grid = buildGrid(xs, ys, Math.max(8, Math.min(1024, Math.round(Math.sqrt(n / 4)))));
    const state = { frames: [], draws: 0, selection: [], hovered: -1, restTimer: 0 };

    function resize() {
      const ratio = window.devicePixelRatio || 1;
      const width = root.clientWidth;
      const height = root.clientHeight;
      for (const c of [canvas, overlay]) {
        c.width = Math.max(1, Math.round(width * ratio));
        c.height = Math.max(1, Math.round(height * ratio));
        c.style.width = width + "px";
        c.style.height = height + "px";
      }
      gl.viewport(0, 0, canvas.width, canvas.height);
      draw(false);
    }

    function aspect() {
      const w = canvas.width;
      const h = canvas.height;
      return w > h ? [h / w, 1] : [1, w / h];
    }

    // data (-1..1) -> clip space, and back from CSS pixels
    function toScreen(x, y) {
      const [ax, ay] = aspect();
      const sx = (x - view.cx) * view.zoom * ax;
      const sy = (y - view.cy) * view.zoom * ay;
      return [((sx + 1) / 2) * root.clientWidth, ((1 - sy) / 2) * root.clientHeight];
    }

    function toData(px, py) {
      const [ax, ay] = aspect();
      const sx = (px / root.clientWidth) * 2 - 1;
      const sy = 1 - (py / root.clientHeight) * 2;
      return [sx / (view.zoom * ax) + view.cx, sy / (view.zoom * ay) + view.cy];
    }

    function draw(interactive) {
      const started = performance.now();
      const [ax, ay] = aspect();
      gl.uniform2f(where.scale, view.zoom * ax, view.zoom * ay);
      gl.uniform2f(where.offset, -view.cx * view.zoom * ax, -view.cy * view.zoom * ay);
      const ratio = window.devicePixelRatio || 1;
      const base = n < 2000 ? 9 : n < 50000 ? 6 : 3;
      const size = Math.max(2, Math.min(16, base * Math.sqrt(view.zoom)));
      gl.uniform1f(where.size, size * ratio);
      gl.uniform1f(where.anySelected, state.selection.length ? 1 : 0);
      gl.clearColor(1, 1, 1, 1);
      gl.clear(gl.COLOR_BUFFER_BIT);
      const count = interactive ? Math.min(n, INTERACTIVE_POINTS) : n;
      gl.drawArrays(gl.POINTS, 0, count);
      state.draws++;
      state.lastDraw = { points: count, ms: performance.now() - started };
      if (interactive) {
        clearTimeout(state.restTimer);
        state.restTimer = setTimeout(() => draw(false), REST_MS);
      }
    }

    function nearest(px, py) {
      const [dx, dy] = toData(px, py);
      const [rx] = toData(px + HOVER_PX, py);
      const radius = Math.abs(rx - dx);
      const cells = grid.cells;
      const reach = Math.ceil((radius / 2) * cells) + 1;
      const cx = Math.floor(((dx + 1) / 2) * cells);
      const cy = Math.floor(((dy + 1) / 2) * cells);
      let best = -1;
      let bestDistance = radius * radius;
      for (let y = Math.max(0, cy - reach); y <= Math.min(cells - 1, cy + reach); y++) {
        for (let x = Math.max(0, cx - reach); x <= Math.min(cells - 1, cx + reach); x++) {
          const cell = y * cells + x;
          for (let k = grid.starts[cell]; k < grid.starts[cell + 1]; k++) {
            const i = grid.order[k];
            const d = (xs[i] - dx) ** 2 + (ys[i] - dy) ** 2;
            if (d <= bestDistance) {
              best = i;
              bestDistance = d;
            }
          }
        }
      }
      return best;
    }

    function showTip(i, px, py) {
      state.hovered = i;
      if (i < 0) {
        tip.hidden = true;
        return;
      }
      const img = document.createElement("img");
      img.alt = "";
      img.src = (data.thumbs && data.thumbs[i]) || (options.thumbUrl ? options.thumbUrl(i) : linkOf(i));
      const caption = document.createElement("div");
      caption.className = "sa-map-caption";
      caption.textContent = data.paths[i] + (data.labels ? "  ·  " + data.labels[i] : "");
      const facet = document.createElement("div");
      facet.className = "sa-map-facet";
      facet.textContent = names[categories[i]];
      tip.replaceChildren(img, caption, facet);
      tip.hidden = false;
      tip.style.left = Math.min(px + 14, root.clientWidth - 240) + "px";
      tip.style.top = Math.min(py + 14, root.clientHeight - 200) + "px";
    }

    function drawLegend() {
      legend.replaceChildren(
        ...names.map((name, i) => {
          const row = document.createElement("div");
          const swatch = document.createElement("span");
          swatch.className = "sa-map-swatch";
          swatch.style.background = colourOf(i);
          row.append(swatch, document.createTextNode(" " + name + " (" + data.counts[i] + ")"));
          return row;
        })
      );
      const title = document.createElement("div");
      title.className = "sa-map-legend-title";
      title.textContent = data.colourBy + " · " + n.toLocaleString() + " points · " + data.method;
      legend.prepend(title);
    }

    function inside(polygon, x, y) {
      let hit = false;
      for (let a = 0, b = polygon.length - 1; a < polygon.length; b = a++) {
        const [xa, ya] = polygon[a];
        const [xb, yb] = polygon[b];
        if (ya > y !== yb > y && x < ((xb - xa) * (y - ya)) / (yb - ya) + xa) hit = !hit;
      }
      return hit;
    }

    function select(indices) {
      state.selection = indices;
      selectedFlags.fill(0);
      for (const i of indices) selectedFlags[i] = 1;
      gl.bindBuffer(gl.ARRAY_BUFFER, selectedBuffer);
      gl.bufferData(gl.ARRAY_BUFFER, selectedFlags, gl.STATIC_DRAW);
      draw(false);
      const paths = indices.map((i) => data.paths[i]);
      panel.hidden = indices.length === 0;
      if (indices.length) {
        const head = document.createElement("div");
        head.textContent = indices.length + " selected ";
        const clear = document.createElement("button");
        clear.textContent = "clear";
        clear.onclick = () => select([]);
        head.append(clear);
        const list = document.createElement("textarea");
        list.readOnly = true;
        list.value = [...new Set(paths)].join("\n");
        panel.replaceChildren(head, list);
      }
      if (options.onSelect) options.onSelect(indices, paths);
    }

    const ctx = overlay.getContext("2d");
    let drag = null;
    overlay.addEventListener("pointerdown", (event) => {
      overlay.setPointerCapture(event.pointerId);
      drag = { x: event.offsetX, y: event.offsetY, moved: false, lasso: event.shiftKey ? [] : null };
    });
    overlay.addEventListener("pointermove", (event) => {
      if (!drag) {
        showTip(nearest(event.offsetX, event.offsetY), event.offsetX, event.offsetY);
        return;
      }
      const dx = event.offsetX - drag.x;
      const dy = event.offsetY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 2) drag.moved = true;
      if (drag.lasso) {
        drag.lasso.push([event.offsetX, event.offsetY]);
        const ratio = window.devicePixelRatio || 1;
        ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
        ctx.clearRect(0, 0, overlay.width, overlay.height);
        ctx.beginPath();
        drag.lasso.forEach(([x, y], k) => (k ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
        ctx.strokeStyle = "#333";
        ctx.setLineDash([4, 3]);
        ctx.stroke();
        return;
      }
      panBy(dx, dy);
      drag.x = event.offsetX;
      drag.y = event.offsetY;
    });
    overlay.addEventListener("pointerup", (event) => {
      const ended = drag;
      drag = null;
      ctx.clearRect(0, 0, overlay.width, overlay.height);
      if (ended && ended.lasso && ended.lasso.length > 2) {
        const chosen = [];
        for (let i = 0; i < n; i++) {
          const [sx, sy] = toScreen(xs[i], ys[i]);
          if (inside(ended.lasso, sx, sy)) chosen.push(i);
        }
        select(chosen);
      } else if (ended && !ended.moved) {
        const i = nearest(event.offsetX, event.offsetY);
        if (i >= 0) {
          if (options.onOpen) options.onOpen(i);
          else window.open(linkOf(i), "_blank");
        }
      }
    });
    overlay.addEventListener("pointerleave", () => showTip(-1, 0, 0));
    overlay.addEventListener(
      "wheel",
      (event) => {
        event.preventDefault();
        zoomAt(event.offsetX, event.offsetY, Math.exp(-event.deltaY * 0.0015));
      },
      { passive: false }
    );

    function panBy(dx, dy) {
      const [ax, ay] = aspect();
      view.cx -= (dx / root.clientWidth) * 2 / (view.zoom * ax);
      view.cy += (dy / root.clientHeight) * 2 / (view.zoom * ay);
      draw(true);
    }

    function zoomAt(px, py, factor) {
      const [bx, by] = toData(px, py);
      view.zoom = Math.min(2000, Math.max(0.2, view.zoom * factor));
      const [ax2, ay2] = toData(px, py);
      view.cx += bx - ax2;
      view.cy += by - ay2;
      draw(true);
    }

    drawLegend();
    const observer = new ResizeObserver(resize);
    observer.observe(root);
    resize();
    // another map replaces this one: free its GPU buffers and stop watching the element
    function destroy() {
      observer.disconnect();
      clearTimeout(state.restTimer);
      const lose = gl.getExtension("WEBGL_lose_context");
      if (lose) lose.loseContext();
      root.replaceChildren();
    }
    const api = {
      points: n,
      state,
      view,
      draw,
      panBy,
      zoomAt,
      select,
      destroy,
      toScreen,
      hoverAt: (px, py) => showTip(nearest(px, py), px, py),
    };
    root.searchappMap = api;
    return api;
  }

  window.SearchappMap = { createMap };
  if (window.SEARCHAPP_MAP) {
    const root = document.getElementById("map");
    window.searchappMap = createMap(root, window.SEARCHAPP_MAP);
  }
})();

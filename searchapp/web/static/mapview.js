// The map view: the collection laid out by map.js, and below it the photos a lasso caught, so
// that a selection on the map filters what the page shows (as FiftyOne's embeddings panel does).
"use strict";

const SELECTED_SHOWN = 500;
const mapView = { request: 0, map: null };

async function showMap() {
  const load = async () => {
    const request = ++mapView.request;
    setStatus("laying the photos out...");
    let data;
    try {
      const params = new URLSearchParams({ kind: $("map-kind").value, colour: $("map-colour").value });
      const response = await fetch("/api/map?" + params);
      data = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
      if (!response.ok) throw new Error(data.error || response.statusText);
    } catch (error) {
      if (request === mapView.request) setStatus(error.message, true);
      return;
    }
    if (request !== mapView.request) return; // a newer choice replaced this one
    if (mapView.map) mapView.map.destroy();
    setStatus(`${data.paths.length} points; ${data.method}`);
    showSelection(data, []);
    mapView.map = window.searchappMap = SearchappMap.createMap($("map-canvas"), data, {
      thumbUrl: (i) => `/api/photos/${data.imageIds[i]}/thumb?size=160`,
      onOpen: (i) => window.open(`/api/photos/${data.imageIds[i]}/image`, "_blank"),
      onSelect: (indices) => showSelection(data, indices),
    });
  };
  $("map-kind").addEventListener("change", load);
  $("map-colour").addEventListener("change", load);
  await load();
}

function showSelection(data, indices) {
  const photos = [...new Set(indices.map((i) => data.imageIds[i]))];
  $("map-selected").textContent = indices.length
    ? `${photos.length} photos selected` + (photos.length > SELECTED_SHOWN ? `; the first ${SELECTED_SHOWN} shown` : "")
    : "";
  const pathOf = new Map(indices.map((i) => [data.imageIds[i], data.paths[i]]));
  $("map-grid").replaceChildren(...photos.slice(0, SELECTED_SHOWN).map((id) => el("figure", { title: pathOf.get(id) }, [
    el("a", { href: `/api/photos/${id}/image`, target: "_blank" }, [
      el("img", { src: `/api/photos/${id}/thumb?size=160`, alt: pathOf.get(id), loading: "lazy" }),
    ]),
    el("figcaption", { textContent: pathOf.get(id).split("/").pop() }),
  ])));
}

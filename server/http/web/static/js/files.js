// The Files view: one folder's entries, breadcrumbs, search by name, and each entry's
// actions (download, versions, share, rename, move, delete).

import {
  allPages,
  api,
  contentUrl,
  download,
  formatSize,
  formatTime,
  joinPath,
  parentOf,
} from "./api.js";
import { attempt, field, h, openDialog, showNotice } from "./ui.js";
import { openVersions } from "./versions.js";
import { openShare } from "./shares.js";

// Search walks the folders through the API (so every policy applies); it stops here.
const SEARCH_MAX_FOLDERS = 500;
const SEARCH_PARALLEL = 4;

const list = document.getElementById("entries");
const empty = document.getElementById("files-empty");
const crumbs = document.getElementById("crumbs");
const dropWhere = document.getElementById("drop-where");
const searchInput = document.getElementById("search");
const searchStatus = document.getElementById("search-status");

export const state = { path: "/" };
let searchRun = 0;

export function folderHash(path) {
  return path === "/" ? "#files" : `#files=${encodeURIComponent(path)}`;
}

export function folderName(path) {
  return path === "/" ? "My files" : path;
}

function byFolderThenName(a, b) {
  if (a.type !== b.type) return a.type === "folder" ? -1 : 1;
  return a.name.localeCompare(b.name, undefined, { numeric: true, sensitivity: "base" });
}

export async function showFolder(path) {
  state.path = path;
  searchRun += 1;
  searchInput.value = "";
  searchStatus.hidden = true;
  renderCrumbs(path);
  dropWhere.textContent = folderName(path);
  await attempt(async () => {
    const entries = await allPages("/api/v1/files", "entries", { path });
    if (state.path !== path) return;
    renderEntries(entries.sort(byFolderThenName), false);
  });
}

export function refresh() {
  if (searchInput.value.trim()) return runSearch(searchInput.value);
  return showFolder(state.path);
}

function renderCrumbs(path) {
  const parts = path === "/" ? [] : path.slice(1).split("/");
  const items = [h("a", { href: folderHash("/"), text: "My files" })];
  let at = "";
  parts.forEach((name, i) => {
    at += `/${name}`;
    items.push(h("span", { class: "sep", "aria-hidden": "true", text: "/" }));
    items.push(
      i === parts.length - 1
        ? h("span", { "aria-current": "page", text: name })
        : h("a", { href: folderHash(at), text: name }),
    );
  });
  crumbs.replaceChildren(...items);
}

function renderEntries(entries, withPaths) {
  list.replaceChildren(...entries.map((entry) => entryRow(entry, withPaths)));
  empty.hidden = entries.length > 0 || withPaths;
}

function entryRow(entry, withPaths) {
  const isFolder = entry.type === "folder";
  const name = isFolder
    ? h("a", { class: "name", href: folderHash(entry.path), title: entry.name, text: entry.name })
    : h("a", {
        class: "name",
        href: contentUrl(entry.id),
        download: entry.name,
        title: entry.name,
        text: entry.name,
      });
  const meta = [];
  if (withPaths) meta.push(h("span", { class: "where", text: folderName(parentOf(entry.path)) }));
  if (!isFolder) meta.push(h("span", { class: "size", text: formatSize(entry.size) }));
  if (entry.mtime) meta.push(h("span", { class: "when", text: formatTime(entry.mtime) }));
  return h(
    "li",
    {
      class: `item ${entry.type}`,
      "data-id": entry.id,
      "data-name": entry.name,
      "data-path": entry.path,
      "data-size": isFolder ? null : String(entry.size),
    },
    h("span", { class: `icon ${entry.type}`, "aria-hidden": "true" }),
    h("div", { class: "main" }, name, h("div", { class: "meta" }, meta)),
    h("button", {
      type: "button",
      class: "more",
      "aria-label": `Actions for ${entry.name}`,
      title: "Actions",
      text: "⋯",
      onclick: () => openActions(entry),
    }),
  );
}

// -- search ---------------------------------------------------------------------------

export async function runSearch(text) {
  const needle = text.trim().normalize("NFC").toLocaleLowerCase();
  const run = ++searchRun;
  if (!needle) {
    await showFolder(state.path);
    return;
  }
  crumbs.replaceChildren(
    h("a", { href: folderHash(state.path), text: "Back to folder" }),
    h("span", { class: "sep", "aria-hidden": "true", text: "·" }),
    h("span", { text: `Search: ${text.trim()}` }),
  );
  searchStatus.hidden = false;
  searchStatus.textContent = "Searching…";
  const found = [];
  const queue = ["/"];
  let searched = 0;
  await attempt(async () => {
    while (queue.length && searched < SEARCH_MAX_FOLDERS) {
      const batch = queue.splice(0, Math.min(SEARCH_PARALLEL, SEARCH_MAX_FOLDERS - searched));
      const pages = await Promise.all(
        batch.map((path) => allPages("/api/v1/files", "entries", { path }).catch(() => [])),
      );
      if (run !== searchRun) return;
      searched += batch.length;
      for (const entry of pages.flat()) {
        if (entry.type === "folder") queue.push(entry.path);
        if (entry.name.normalize("NFC").toLocaleLowerCase().includes(needle)) found.push(entry);
      }
      renderEntries([...found].sort(byFolderThenName), true);
    }
    if (run !== searchRun) return;
    const what = found.length === 1 ? "1 match" : `${found.length} matches`;
    searchStatus.textContent = queue.length
      ? `${what} in the first ${searched} folders (narrow the search to look further).`
      : `${what} for “${text.trim()}”.`;
  });
}

let searchTimer = 0;
searchInput.addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => runSearch(searchInput.value), 300);
});
document.getElementById("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  clearTimeout(searchTimer);
  runSearch(searchInput.value);
});

// -- actions --------------------------------------------------------------------------

function ifMatch(entry) {
  return { "If-Match": `"${entry.rev}"` };
}

async function openActions(entry) {
  const isFolder = entry.type === "folder";
  const handlers = isFolder
    ? { open: () => void (location.hash = folderHash(entry.path)) }
    : {
        download: () => download(entry.id, entry.name),
        versions: () => openVersions(entry, refresh),
        share: () => openShare(entry),
      };
  Object.assign(handlers, {
    rename: () => renameEntry(entry),
    move: () => moveEntry(entry),
    delete: () => deleteEntry(entry),
  });
  const labels = {
    open: "Open",
    download: "Download",
    versions: "Versions",
    share: "Share link",
    rename: "Rename",
    move: "Move",
    delete: "Delete",
  };
  const actions = Object.keys(handlers).map((id) => ({
    id,
    label: labels[id],
    danger: id === "delete",
  }));
  actions.push({ id: "close", label: "Close" });
  const choice = await openDialog({
    title: entry.name,
    body: h("p", { class: "hint", text: entry.path }),
    actions,
    menu: true,
  });
  if (choice && handlers[choice]) await handlers[choice]();
}

async function renameEntry(entry) {
  const input = h("input", { type: "text", value: entry.name, required: true, autocomplete: "off" });
  const done = await openDialog({
    title: `Rename ${entry.name}`,
    body: field("New name", input),
    actions: [
      {
        id: "rename",
        label: "Rename",
        primary: true,
        run: () =>
          api("PATCH", `/api/v1/files/${entry.id}`, {
            json: { name: input.value.trim() },
            headers: ifMatch(entry),
          }),
      },
      { id: "cancel", label: "Cancel" },
    ],
  });
  if (done && done.id) {
    showNotice(`Renamed to ${done.name}.`, "ok");
    await refresh();
  }
}

async function moveEntry(entry) {
  const input = h("input", { type: "text", value: parentOf(entry.path), required: true, autocomplete: "off" });
  const done = await openDialog({
    title: `Move ${entry.name}`,
    body: field("Into folder", input, "A folder path such as /Reports/2025. Missing folders are made."),
    actions: [
      {
        id: "move",
        label: "Move",
        primary: true,
        run: () => {
          const folder = input.value.trim().replace(/\/+$/, "") || "/";
          const target = joinPath(folder.startsWith("/") ? folder : `/${folder}`, entry.name);
          return api("PATCH", `/api/v1/files/${entry.id}`, {
            json: { path: target },
            headers: ifMatch(entry),
          });
        },
      },
      { id: "cancel", label: "Cancel" },
    ],
  });
  if (done && done.id) {
    showNotice(`Moved to ${done.path}.`, "ok");
    await refresh();
  }
}

async function deleteEntry(entry) {
  const what = entry.type === "folder" ? "This folder and everything in it go" : "It goes";
  const done = await openDialog({
    title: `Delete ${entry.name}?`,
    body: h("p", { text: `${what} to Deleted files, where you can restore it.` }),
    actions: [
      {
        id: "delete",
        label: "Delete",
        danger: true,
        primary: true,
        run: () => api("DELETE", `/api/v1/files/${entry.id}`, { headers: ifMatch(entry) }),
      },
      { id: "cancel", label: "Cancel" },
    ],
  });
  if (done === "delete") {
    showNotice(`${entry.name} was moved to Deleted files.`, "ok");
    await refresh();
  }
}

export async function newFolder() {
  const input = h("input", { type: "text", required: true, autocomplete: "off", placeholder: "Folder name" });
  const done = await openDialog({
    title: "New folder",
    body: field(`Name (in ${folderName(state.path)})`, input),
    actions: [
      {
        id: "create",
        label: "Create",
        primary: true,
        run: () => {
          const name = input.value.trim();
          if (!name) throw new Error("Give the folder a name.");
          return api("POST", "/api/v1/folders", { json: { path: joinPath(state.path, name) } });
        },
      },
      { id: "cancel", label: "Cancel" },
    ],
  });
  if (done && done.id) await showFolder(state.path);
}

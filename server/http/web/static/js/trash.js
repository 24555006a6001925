// Deleted files: what was deleted, when and from where; restore (to its old place or a
// new one) or delete for good.

import { allPages, api, formatSize, formatTime, parentOf } from "./api.js";
import { attempt, field, h, openDialog, showNotice } from "./ui.js";
import { folderName } from "./files.js";

const list = document.getElementById("trash");
const empty = document.getElementById("trash-empty");
const filter = document.getElementById("trash-search");
let items = [];

export async function showTrash() {
  await attempt(async () => {
    items = await allPages("/api/v1/trash", "items");
    render();
  });
}

function render() {
  const needle = filter.value.trim().normalize("NFC").toLocaleLowerCase();
  const shown = needle
    ? items.filter((item) => item.name.normalize("NFC").toLocaleLowerCase().includes(needle))
    : items;
  list.replaceChildren(...shown.map(trashRow));
  empty.hidden = shown.length > 0;
  empty.textContent = items.length ? "Nothing deleted matches that name." : "Nothing deleted.";
}

filter.addEventListener("input", render);
document.getElementById("trash-search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  render();
});

function trashRow(item) {
  const size =
    item.type === "folder"
      ? `${item.files} file${item.files === 1 ? "" : "s"} · ${formatSize(item.size || 0)}`
      : formatSize(item.size || 0);
  const meta = [
    h("span", { class: "where", text: `From ${folderName(parentOf(item.path))}` }),
    h("span", { class: "size", text: size }),
    h("span", { class: "when", text: `Deleted ${formatTime(item.trashed_at)}` }),
  ];
  if (item.path_taken) meta.push(h("span", { class: "warn", text: "Something new is at its old place" }));
  return h(
    "li",
    { class: `item ${item.type}`, "data-id": item.id, "data-name": item.name, "data-path": item.path },
    h("span", { class: `icon ${item.type}`, "aria-hidden": "true" }),
    h(
      "div",
      { class: "main" },
      h("span", { class: "name", title: item.name, text: item.name }),
      h("div", { class: "meta" }, meta),
    ),
    h(
      "div",
      { class: "row-actions" },
      h("button", {
        type: "button",
        class: "button small primary",
        "data-action": "restore",
        text: "Restore",
        onclick: () => restore(item),
      }),
      h("button", {
        type: "button",
        class: "more",
        "aria-label": `More for ${item.name}`,
        title: "More",
        text: "⋯",
        onclick: () => more(item),
      }),
    ),
  );
}

async function restore(item, path) {
  try {
    const entry = await api("POST", `/api/v1/trash/${item.id}/restore`, { json: path ? { path } : {} });
    showNotice(`${item.name} is back at ${entry.path}.`, "ok");
    await showTrash();
  } catch (error) {
    if (error.slug === "already-exists") {
      await restoreElsewhere(item, error.message);
      return;
    }
    showNotice(error.message);
  }
}

async function restoreElsewhere(item, why) {
  const input = h("input", { type: "text", value: `${item.path} (restored)`, required: true, autocomplete: "off" });
  const done = await openDialog({
    title: `Restore ${item.name} to…`,
    body: [
      why ? h("p", { class: "hint", text: why }) : null,
      field("New place (full path, with its name)", input),
    ],
    actions: [
      {
        id: "restore",
        label: "Restore",
        primary: true,
        run: () => api("POST", `/api/v1/trash/${item.id}/restore`, { json: { path: input.value.trim() } }),
      },
      { id: "cancel", label: "Cancel" },
    ],
  });
  if (done && done.id) {
    showNotice(`${item.name} is back at ${done.path}.`, "ok");
    await showTrash();
  }
}

async function more(item) {
  const choice = await openDialog({
    title: item.name,
    body: h("p", { class: "hint", text: `Deleted from ${item.path}` }),
    actions: [
      { id: "restore", label: "Restore" },
      { id: "restore-to", label: "Restore to…" },
      { id: "purge", label: "Delete forever", danger: true },
      { id: "close", label: "Close" },
    ],
    menu: true,
  });
  if (choice === "restore") await restore(item);
  else if (choice === "restore-to") await restoreElsewhere(item, "");
  else if (choice === "purge") await purge(item);
}

async function purge(item) {
  const what = item.type === "folder" ? `${item.name} and the ${item.files} file(s) in it` : item.name;
  const done = await openDialog({
    title: `Delete ${item.name} forever?`,
    body: h("p", { text: `${what} and all earlier versions will be gone for good. This cannot be undone.` }),
    actions: [
      {
        id: "purge",
        label: "Delete forever",
        danger: true,
        primary: true,
        run: () => api("DELETE", `/api/v1/trash/${item.id}`),
      },
      { id: "cancel", label: "Cancel" },
    ],
  });
  if (done === "purge") {
    showNotice(`${item.name} was deleted for good.`, "ok");
    await showTrash();
  }
}

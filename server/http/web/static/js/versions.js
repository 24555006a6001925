// A file's versions: who made each, when, from which client; download or restore one.

import { allPages, api, describeClient, download, formatSize, formatTime } from "./api.js";
import { h, KEEP_OPEN, openDialog, showNotice } from "./ui.js";

function versionRow(entry, revision, restore) {
  const who = revision.user ? revision.user.email : "";
  const details = [formatSize(revision.size), who, describeClient(revision.client)].filter(Boolean);
  return h(
    "li",
    { class: `version${revision.current ? " current" : ""}`, "data-rev": revision.rev },
    h(
      "div",
      { class: "main" },
      h("strong", { text: formatTime(revision.created_at) }),
      revision.current ? h("span", { class: "badge", text: "Current" }) : null,
      h("div", { class: "meta", text: details.join(" · ") }),
    ),
    h(
      "div",
      { class: "row-actions" },
      h("button", {
        type: "button",
        class: "button small",
        "data-action": "download-version",
        text: "Download",
        onclick: () => download(entry.id, entry.name, revision.rev),
      }),
      revision.current
        ? null
        : h("button", {
            type: "button",
            class: "button small primary",
            "data-action": "restore-version",
            text: "Restore",
            onclick: () => restore(revision),
          }),
    ),
  );
}

export async function openVersions(entry, onChange) {
  const list = h("ul", { class: "versions", "aria-label": "Versions" });
  const status = h("p", { class: "hint", text: "Loading versions…" });
  let current = entry;

  async function load() {
    const revisions = await allPages(`/api/v1/files/${entry.id}/revisions`, "revisions");
    list.replaceChildren(...revisions.map((r) => versionRow(entry, r, restore)));
    status.textContent =
      revisions.length === 1
        ? "This is the only version."
        : `${revisions.length} versions, newest first. Restoring one makes it the current version; nothing is lost.`;
  }

  async function restore(revision) {
    try {
      current = await api("POST", `/api/v1/files/${entry.id}/restore`, {
        json: { rev: revision.rev },
        headers: { "If-Match": `"${current.rev}"` },
      });
      showNotice(`Restored the version of ${formatTime(revision.created_at)}.`, "ok");
      await load();
      onChange();
    } catch (error) {
      status.textContent = error.message;
      status.className = "error";
    }
  }

  const shown = openDialog({
    title: `Versions of ${entry.name}`,
    body: [status, list],
    actions: [
      { id: "refresh", label: "Refresh", run: async () => { await load(); return KEEP_OPEN; } },
      { id: "close", label: "Close", primary: true },
    ],
    wide: true,
  });
  try {
    await load();
  } catch (error) {
    status.textContent = error.message;
    status.className = "error";
  }
  return shown;
}

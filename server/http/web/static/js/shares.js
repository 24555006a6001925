// Share links: make one for a file (expiry, optional password and download limit), copy
// it, see the ones made and revoke them. A link is a `link` transfer of the API.

import { api, formatSize, formatTime } from "./api.js";
import { attempt, field, h, KEEP_OPEN, openDialog, showNotice } from "./ui.js";

const list = document.getElementById("shares");
const empty = document.getElementById("shares-empty");
const EXPIRY_CHOICES = [
  [3600, "1 hour"],
  [86400, "1 day"],
  [7 * 86400, "7 days"],
  [30 * 86400, "30 days"],
  [90 * 86400, "90 days"],
];
const FINAL = new Set(["completed", "failed", "cancelled", "expired"]);

async function settled(transferId) {
  for (let i = 0; i < 120; i += 1) {
    const transfer = await api("GET", `/api/v1/transfers/${transferId}`);
    if (FINAL.has(transfer.state)) return transfer;
    await new Promise((resolve) => setTimeout(resolve, i < 10 ? 200 : 1000));
  }
  throw new Error("The link is taking long to make; find it under Links shortly.");
}

async function copy(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // Clipboard API refused (not a secure context): select the text for Ctrl+C.
    const input = button.parentElement.querySelector("input");
    if (input) input.select();
    document.execCommand("copy");
  }
  button.textContent = "Copied";
  setTimeout(() => (button.textContent = "Copy"), 2000);
}

function linkBox(url) {
  const input = h("input", { type: "text", readonly: true, value: url, class: "link-url", "aria-label": "Share link" });
  const button = h("button", { type: "button", class: "button", "data-action": "copy", text: "Copy" });
  button.addEventListener("click", () => copy(url, button));
  return h("div", { class: "copy-box" }, input, button);
}

export async function openShare(entry) {
  const expiry = h(
    "select",
    {},
    EXPIRY_CHOICES.map(([seconds, label]) =>
      h("option", { value: String(seconds), selected: seconds === 7 * 86400, text: label }),
    ),
  );
  const password = h("input", { type: "password", autocomplete: "new-password", minlength: "8" });
  const limit = h("input", { type: "number", min: "1", step: "1", inputmode: "numeric" });
  const form = h(
    "div",
    {},
    h("p", { class: "hint", text: `Anyone with the link can download ${entry.name} (this version of it).` }),
    field("Expires after", expiry),
    field("Password (optional)", password, "At least 8 characters. Tell it to the recipient another way."),
    field("Download limit (optional)", limit),
  );
  const result = h("div", { class: "share-result" });
  await openDialog({
    title: `Share ${entry.name}`,
    body: [form, result],
    actions: [
      {
        id: "create-link",
        label: "Create link",
        primary: true,
        run: async () => {
          const destination = { type: "link", expires_in: Number(expiry.value) };
          if (password.value) destination.password = password.value;
          if (limit.value) destination.max_downloads = Number(limit.value);
          const started = await api("POST", "/api/v1/transfers", {
            json: { file_ids: [entry.id], destination },
            headers: { "Idempotency-Key": crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) },
          });
          const done = await settled(started.id);
          if (done.state !== "completed") {
            throw new Error(done.error ? done.error.message : `The link was not made (${done.state}).`);
          }
          form.hidden = true;
          result.replaceChildren(
            h("p", { class: "ok", text: `Link ready. It expires ${formatTime(done.result.expires_at)}.` }),
            linkBox(done.result.url),
          );
          document.querySelector('#dialog [data-action="create-link"]').hidden = true;
          return KEEP_OPEN;
        },
      },
      { id: "close", label: "Close" },
    ],
  });
}

// -- the Links view -------------------------------------------------------------------

function stateOf(transfer) {
  if (transfer.state === "completed") return ["live", "Live"];
  if (transfer.state === "cancelled") return ["revoked", "Revoked"];
  if (transfer.state === "expired") return ["expired", "Expired"];
  if (transfer.state === "failed") return ["failed", "Failed"];
  return ["pending", "Being made"];
}

function shareRow(transfer) {
  const files = (transfer.result && transfer.result.files) || [];
  const names = files.map((f) => f.name).join(", ") || `${transfer.files_total} file(s)`;
  const [key, label] = stateOf(transfer);
  const meta = [
    h("span", { class: `badge ${key}`, text: label }),
    h("span", { text: `Made ${formatTime(transfer.created_at)}` }),
  ];
  if (transfer.result && transfer.result.expires_at && key === "live") {
    meta.push(h("span", { text: `Expires ${formatTime(transfer.result.expires_at)}` }));
  }
  if (transfer.destination && transfer.destination.password_protected) meta.push(h("span", { text: "Password" }));
  if (files.length) meta.push(h("span", { text: formatSize(files.reduce((n, f) => n + f.size, 0)) }));
  const actions = [];
  if (key === "live") {
    actions.push(linkBox(transfer.result.url));
    actions.push(
      h("button", {
        type: "button",
        class: "button small danger",
        "data-action": "revoke",
        text: "Revoke",
        onclick: () => revoke(transfer, names),
      }),
    );
  }
  return h(
    "li",
    { class: `item share ${key}`, "data-id": transfer.id, "data-name": names },
    h("span", { class: "icon link", "aria-hidden": "true" }),
    h("div", { class: "main" }, h("span", { class: "name", text: names }), h("div", { class: "meta" }, meta)),
    h("div", { class: "row-actions share-actions" }, actions),
  );
}

export async function showShares() {
  await attempt(async () => {
    const links = [];
    let before = null;
    do {
      const page = await api("GET", "/api/v1/transfers", { query: { limit: 200, before } });
      links.push(...page.transfers.filter((t) => t.kind === "link"));
      before = page.next_before;
    } while (before && links.length < 1000);
    list.replaceChildren(...links.map(shareRow));
    empty.hidden = links.length > 0;
  });
}

async function revoke(transfer, names) {
  const done = await openDialog({
    title: "Revoke this link?",
    body: h("p", { text: `Nobody will be able to download ${names} with it any more.` }),
    actions: [
      {
        id: "revoke",
        label: "Revoke",
        danger: true,
        primary: true,
        run: () => api("DELETE", `/api/v1/transfers/${transfer.id}`),
      },
      { id: "cancel", label: "Cancel" },
    ],
  });
  if (done && done !== "cancel") {
    showNotice("The link was revoked.", "ok");
    await showShares();
  }
}

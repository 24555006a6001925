// Uploads through tus (tus-js-client, vendored): resumable, with a progress bar per file,
// from the file picker or by drag and drop onto the Files view.

import { csrfToken, joinPath, formatSize } from "./api.js";
import { h, showNotice } from "./ui.js";

const CHUNK_SIZE = 8 * 1024 * 1024;
// The whole-file SHA-256 goes with the upload when the browser can compute it cheaply
// (Web Crypto needs the file in memory), so the server verifies what it received.
const HASH_LIMIT = 64 * 1024 * 1024;
const uploads = document.getElementById("uploads");

async function sha256Hex(file) {
  if (!globalThis.crypto || !crypto.subtle || file.size > HASH_LIMIT) return null;
  const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

function problemDetail(error) {
  const response = error && error.originalResponse;
  if (response) {
    try {
      const body = JSON.parse(response.getBody() || "{}");
      if (body.detail || body.title) return body.detail || body.title;
    } catch {
      // not problem+json: fall through
    }
    return `the server answered ${response.getStatus()}`;
  }
  return "the server could not be reached";
}

function permanent(error) {
  const status = error && error.originalResponse ? error.originalResponse.getStatus() : 0;
  return status >= 400 && status < 500 && ![408, 409, 423, 429].includes(status);
}

export function uploadFiles(files, folder, onDone) {
  for (const file of files) startUpload(file, folder, onDone);
}

function startUpload(file, folder, onDone) {
  const path = joinPath(folder, file.name);
  const bar = h("progress", { max: "100", value: "0", "aria-label": `Upload of ${file.name}` });
  const text = h("span", { class: "progress-text", text: "Waiting…" });
  const cancel = h("button", { type: "button", class: "link", text: "Cancel" });
  const row = h(
    "li",
    { class: "upload", "data-path": path },
    h("div", { class: "upload-name" }, h("strong", { text: file.name }), " ", h("span", { class: "hint", text: formatSize(file.size) })),
    bar,
    h("div", { class: "upload-state" }, text, cancel),
  );
  uploads.prepend(row);
  let upload = null;
  cancel.addEventListener("click", () => {
    if (upload) upload.abort(true);
    row.remove();
  });

  sha256Hex(file).then((sha256) => {
    const metadata = { path, mtime: String(file.lastModified / 1000) };
    if (sha256) metadata.sha256 = sha256;
    upload = new window.tus.Upload(file, {
      endpoint: "/api/v1/uploads",
      chunkSize: CHUNK_SIZE,
      retryDelays: [0, 1000, 3000, 5000, 10000],
      metadata,
      headers: { "X-CSRF-Token": csrfToken },
      // Resume only an upload of this same file to this same place.
      fingerprint: () => Promise.resolve(`dropline:${path}:${file.size}:${file.lastModified}`),
      removeFingerprintOnSuccess: true,
      onShouldRetry: (error) => !permanent(error),
      onProgress: (sent, total) => {
        const percent = total ? Math.floor((sent / total) * 100) : 100;
        bar.value = percent;
        text.textContent = `${percent}% · ${formatSize(sent)} of ${formatSize(total)}`;
      },
      onSuccess: () => {
        bar.value = 100;
        row.classList.add("done");
        text.textContent = "Uploaded";
        cancel.textContent = "Hide";
        onDone();
        setTimeout(() => row.remove(), 8000);
      },
      onError: (error) => {
        row.classList.add("failed");
        const message = `${file.name} was not uploaded: ${problemDetail(error)}.`;
        text.textContent = "Failed";
        cancel.textContent = "Hide";
        showNotice(message);
      },
    });
    upload.findPreviousUploads().then((previous) => {
      if (previous.length) upload.resumeFromPreviousUpload(previous[0]);
      text.textContent = "Starting…";
      upload.start();
    });
  });
}

// Drag and drop anywhere on the Files view; only files (folders dropped are skipped).
export function installDrop(view, folderOf, onDone) {
  const zone = document.getElementById("drop");
  let depth = 0;
  view.addEventListener("dragenter", (event) => {
    if (!event.dataTransfer || !event.dataTransfer.types.includes("Files")) return;
    event.preventDefault();
    depth += 1;
    zone.classList.add("active");
  });
  view.addEventListener("dragover", (event) => {
    if (!event.dataTransfer || !event.dataTransfer.types.includes("Files")) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  view.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) zone.classList.remove("active");
  });
  view.addEventListener("drop", (event) => {
    if (!event.dataTransfer) return;
    event.preventDefault();
    depth = 0;
    zone.classList.remove("active");
    const items = Array.from(event.dataTransfer.items || []);
    const files = items.length
      ? items
          .filter((item) => item.kind === "file")
          .filter((item) => {
            const entry = item.webkitGetAsEntry ? item.webkitGetAsEntry() : null;
            return !entry || entry.isFile;
          })
          .map((item) => item.getAsFile())
          .filter(Boolean)
      : Array.from(event.dataTransfer.files);
    if (files.length < items.filter((item) => item.kind === "file").length) {
      showNotice("Folders cannot be dropped here yet: drop the files inside them, or make the folder first.");
    }
    if (files.length) uploadFiles(files, folderOf(), onDone);
  });
}

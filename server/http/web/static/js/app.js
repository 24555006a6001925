// The web client's entry point: which view the address shows, and the page-wide controls.

import { newFolder, showFolder, state } from "./files.js";
import { installDrop, uploadFiles } from "./upload.js";
import { showTrash } from "./trash.js";
import { showShares } from "./shares.js";
import { clearNotice } from "./ui.js";

const views = {
  files: document.getElementById("view-files"),
  trash: document.getElementById("view-trash"),
  shares: document.getElementById("view-shares"),
};

function route() {
  const hash = location.hash.slice(1);
  const [name, value] = hash.split("=", 2);
  const view = name in views ? name : "files";
  for (const [key, section] of Object.entries(views)) section.hidden = key !== view;
  for (const tab of document.querySelectorAll(".tabs a")) {
    if (tab.dataset.view === view) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  clearNotice();
  if (view === "files") return showFolder(value ? decodeURIComponent(value) : "/");
  if (view === "trash") return showTrash();
  return showShares();
}

const refresh = () => showFolder(state.path);
const picker = document.getElementById("file-input");
picker.addEventListener("change", () => {
  uploadFiles(Array.from(picker.files), state.path, refresh);
  picker.value = "";
});
document.getElementById("new-folder").addEventListener("click", () => newFolder());
installDrop(views.files, () => state.path, refresh);
window.addEventListener("hashchange", route);
document.body.dataset.ready = "true";
route();

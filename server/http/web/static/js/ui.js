// Small DOM helpers: an element builder, the page's notice line and one modal dialog.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "text") el.textContent = value;
    else if (key === "class") el.className = value;
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const notice = document.getElementById("notice");
const noticeText = document.getElementById("notice-text");
document.getElementById("notice-close").addEventListener("click", () => clearNotice());

export function showNotice(message, kind = "error") {
  noticeText.textContent = message;
  notice.className = `notice ${kind}`;
  notice.setAttribute("role", kind === "error" ? "alert" : "status");
  notice.hidden = false;
}

export function clearNotice() {
  notice.hidden = true;
  noticeText.textContent = "";
}

// Run an async step; a failure shows its message in the notice line.
export async function attempt(step) {
  try {
    return await step();
  } catch (error) {
    showNotice(error.message || String(error));
    return undefined;
  }
}

const dlg = document.getElementById("dialog");
const dlgForm = document.getElementById("dialog-form");
const dlgTitle = document.getElementById("dialog-title");
const dlgBody = document.getElementById("dialog-body");
const dlgError = document.getElementById("dialog-error");
const dlgActions = document.getElementById("dialog-actions");

// One modal at a time. Each action is {id, label, primary?, danger?, run?}: run may be
// async; if it throws, its message shows in the dialog and the dialog stays open. The
// promise resolves with run's result (or the action's id), or null when dismissed.
let settleOpen = null;

export function openDialog({ title, body, actions, wide = false, menu = false }) {
  if (settleOpen) settleOpen(null);
  return new Promise((resolve) => {
    let settled = false;
    const finish = (value) => {
      if (settled) return;
      settled = true;
      settleOpen = null;
      if (dlg.open) dlg.close();
      resolve(value);
    };
    settleOpen = finish;
    dlg.className = [wide ? "wide" : "", menu ? "menu" : ""].join(" ").trim();
    dlgTitle.textContent = title;
    dlgBody.replaceChildren(...[body].flat().filter(Boolean));
    dlgError.hidden = true;
    const buttons = actions.map((action) => {
      const classes = ["button"];
      if (action.primary) classes.push("primary");
      if (action.danger) classes.push("danger");
      const button = h("button", {
        type: "button",
        class: classes.join(" "),
        "data-action": action.id,
        text: action.label,
      });
      button.addEventListener("click", async () => {
        if (!action.run) {
          finish(action.id);
          return;
        }
        dlgError.hidden = true;
        buttons.forEach((b) => (b.disabled = true));
        try {
          const result = await action.run();
          if (settled) return;
          if (result === KEEP_OPEN) {
            buttons.forEach((b) => (b.disabled = false));
            return;
          }
          finish(result === undefined || result === null ? action.id : result);
        } catch (error) {
          if (settled) return;
          dlgError.textContent = error.message || String(error);
          dlgError.hidden = false;
          buttons.forEach((b) => (b.disabled = false));
        }
      });
      return button;
    });
    dlgActions.replaceChildren(...buttons);
    dlgForm.onsubmit = (event) => {
      event.preventDefault();
      if (settled) return;
      const primary = buttons.find((b, i) => actions[i].primary);
      if (primary && !primary.disabled) primary.click();
    };
    // Esc: the only way the dialog closes that is not one of ours.
    dlg.oncancel = () => {
      if (settleOpen === finish) finish(null);
    };
    if (!dlg.open) dlg.showModal();
    const first = dlgBody.querySelector("input, select, textarea");
    if (first) first.focus();
  });
}

export const KEEP_OPEN = Symbol("keep the dialog open");

export function closeDialog() {
  if (settleOpen) settleOpen(null);
}

export function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2)}`;
  input.id = id;
  return h(
    "div",
    { class: "field" },
    h("label", { for: id, text: label }),
    input,
    hint ? h("p", { class: "hint", text: hint }) : null,
  );
}

// The console's shell: login, navigation by the URL's fragment (#/queues/orders), and the
// auto refresh of the page shown.
import { Api } from "./api.js";
import { clusterView } from "./cluster.js";
import { queuesView, queueView } from "./queues.js";
import { topicsView, topicView } from "./topics.js";
import { usersView } from "./users.js";
import { describe, fill, h, setText } from "./ui.js";

const REFRESH_MS = 3000;

const $ = (id) => document.getElementById(id);

/** The view of a fragment: [factory, argument] (unknown fragments show the cluster). */
function route(hash) {
  const parts = hash.replace(/^#\/?/, "").split("/").map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  switch (parts[0]) {
    case "queues":
      return parts[1] ? ["queues", queueView, parts[1]] : ["queues", queuesView];
    case "topics":
      return parts[1] ? ["topics", topicView, parts[1]] : ["topics", topicsView];
    case "users":
      return ["users", usersView];
    default:
      return ["cluster", clusterView];
  }
}

class Console {
  constructor() {
    this.api = new Api({ onUnauthorized: (err) => this.showLogin(err ? "expired" : undefined) });
    this.view = null;
    this.generation = 0;
    this.timer = undefined;
    $("logout").addEventListener("click", () => {
      this.api.logout();
      // Whoever logs in next starts at the cluster page, not at the last user's page.
      history.replaceState(null, "", "#/cluster");
      this.showLogin();
    });
    $("auto-refresh").addEventListener("change", () => this.schedule(this.generation));
    globalThis.addEventListener("hashchange", () => this.show());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.refresh(this.generation);
    });
  }

  start() {
    if (this.api.session) this.show();
    else this.showLogin();
  }

  /** The navigation, the user and the status bar, for a logged-in session. */
  chrome(visible) {
    $("nav").hidden = !visible;
    $("session").hidden = !visible;
    $("statusbar").hidden = !visible;
    if (!visible) return;
    const s = this.api.session;
    setText($("session-user"), `${s.username} (${s.role})`);
    $("nav-users").hidden = s.role !== "admin";
  }

  stopView() {
    this.generation++;
    clearTimeout(this.timer);
    this.view?.dispose?.();
    this.view = null;
  }

  showLogin(reason) {
    this.stopView();
    this.chrome(false);
    document.title = "Log in · momd console";
    const username = h("input", {
      id: "login-username",
      name: "username",
      autocomplete: "username",
      required: true,
    });
    const password = h("input", {
      id: "login-password",
      name: "password",
      type: "password",
      autocomplete: "current-password",
      required: true,
    });
    const button = h("button", { type: "submit", class: "primary" }, "Log in");
    const error = h("p", { class: "error", role: "alert", "data-testid": "login-error" });
    if (reason === "expired") {
      setText(error, "Your session ended (the token expired or was revoked): log in again.");
    }
    const form = h(
      "form",
      { class: "login", "aria-labelledby": "login-title", method: "post" },
      h("h1", { id: "login-title" }, "Log in to momd"),
      h("div", { class: "field" }, h("label", { for: "login-username" }, "Username"), username),
      h("div", { class: "field" }, h("label", { for: "login-password" }, "Password"), password),
      button,
      error,
      h(
        "p",
        { class: "hint" },
        "The same users and passwords as the command line and the REST API. The token is " +
          "kept in this browser tab only, until you log out or close it.",
      ),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      button.disabled = true;
      setText(error, "");
      try {
        await this.api.login(username.value, password.value);
        password.value = "";
        this.show();
      } catch (err) {
        setText(error, describe(err));
        password.select();
      } finally {
        button.disabled = false;
      }
    });
    fill($("main"), form);
    username.focus();
  }

  show() {
    if (!this.api.session) return this.showLogin();
    this.stopView();
    this.chrome(true);
    const [section, factory, arg] = route(location.hash);
    for (const a of $("nav").querySelectorAll("a")) {
      if (a.dataset.view === section) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    const ctx = {
      api: this.api,
      navigate: (hash) => {
        location.hash = hash;
      },
      refresh: () => this.refresh(this.generation),
    };
    this.view = factory(ctx, arg);
    document.title = `${this.view.title} · momd console`;
    setText($("updated"), "");
    setText($("refresh-error"), "");
    fill($("main"), this.view.el);
    this.refresh(this.generation);
  }

  /** Refreshes the view of `generation` (ignored once another view is shown), then re-arms. */
  async refresh(generation) {
    if (generation !== this.generation || !this.view) return;
    clearTimeout(this.timer);
    const view = this.view;
    try {
      await view.refresh();
      if (generation !== this.generation) return;
      setText($("updated"), `Updated ${new Date().toLocaleTimeString("en-GB")}`);
      setText($("refresh-error"), "");
    } catch (err) {
      if (generation !== this.generation) return;
      setText($("refresh-error"), `Could not refresh: ${describe(err)}`);
    }
    this.schedule(generation);
  }

  schedule(generation) {
    clearTimeout(this.timer);
    if (generation !== this.generation || !$("auto-refresh").checked) return;
    if (document.visibilityState === "hidden") return;
    this.timer = setTimeout(() => this.refresh(generation), REFRESH_MS);
  }
}

new Console().start();

// The users page (admins): list, create and delete users. Other users see why it is empty; the
// API refuses them anyway (403), the page only saves them the trip.
import { listAll, seg } from "./api.js";
import { actionForm, confirmButton, dataTable, field, h, outcome, time } from "./ui.js";

/** The users page. */
export function usersView({ api, refresh: refreshNow }) {
  if (!api.isAdmin) {
    return {
      title: "Users",
      el: h(
        "section",
        { "aria-labelledby": "users-title" },
        h("h1", { id: "users-title" }, "Users"),
        h(
          "p",
          { class: "note", "data-testid": "users-forbidden" },
          "Managing users needs the admin role. Ask an admin to create users or to reset a " +
            "password.",
        ),
      ),
      refresh: async () => {},
    };
  }

  const me = api.session.username;
  const result = outcome("users-outcome");
  const table = dataTable({
    caption: "Users",
    testid: "users-table",
    key: (u) => u.username,
    empty: "No users.",
    columns: [
      { title: "Username", text: (u) => u.username },
      { title: "Role", text: (u) => u.role },
      { title: "Created", text: (u) => time(u.createdAt) },
      {
        title: "Actions",
        cell: (u) =>
          u.username === me ? h("span", { class: "hint" }, "you") : confirmButton({
            label: "Delete…",
            confirmLabel: `Delete ${u.username}`,
            testid: "user-delete",
            action: () => api.call("DELETE", `/v1/users/${seg(u.username)}`),
            onDone: (err) => {
              if (err) return result.error(err);
              result.ok(`User '${u.username}' deleted; their tokens no longer work.`);
              refreshNow();
            },
          }),
      },
    ],
  });

  const username = field("Username", {
    required: true,
    pattern: "[A-Za-z0-9_\\-]{3,64}",
    autocomplete: "off",
    id: "user-name",
  });
  const password = field("Password", {
    type: "password",
    required: true,
    minlength: 8,
    autocomplete: "new-password",
    id: "user-password",
  });
  const role = field("Role", {
    tag: "select",
    id: "user-role",
    options: [["user", "user"], ["admin", "admin"]],
  });
  const create = actionForm({
    title: "Create a user",
    testid: "create-user",
    submit: "Create user",
    fields: [username, password, role],
    async action() {
      const name = username.input.value.trim();
      await api.call("POST", "/v1/users", {
        username: name,
        password: password.input.value,
        role: role.input.value,
      });
      password.input.value = "";
      refreshNow();
      return `User '${name}' created.`;
    },
  });

  const el = h(
    "section",
    { "aria-labelledby": "users-title" },
    h("h1", { id: "users-title" }, "Users"),
    create,
    table.el,
    result.el,
  );

  async function refresh() {
    table.update(await listAll(api, "/v1/users", "users"));
  }

  return { title: "Users", el, refresh };
}

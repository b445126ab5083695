// Starts Swagger UI on the docs page. A file, not an inline script: the page's CSP runs only
// scripts served by momd. The page names what to render in data attributes of #swagger-ui.
(function () {
  "use strict";
  const root = document.getElementById("swagger-ui");
  const { url, loginPath, tokenField, scheme } = root.dataset;
  const SwaggerUIBundle = globalThis.SwaggerUIBundle;

  /** After a successful "Try it out" of the login operation, its token goes into "Authorize". */
  function authorizeFromLogin(res) {
    try {
      if (!loginPath || !res.ok || new URL(res.url, location.href).pathname !== loginPath) {
        return res;
      }
      const token = res.body && res.body[tokenField];
      if (typeof token !== "string" || token === "") return res;
      // As the Authorize dialog does: authorize, then keep it (persistAuthorization).
      ui.preauthorizeApiKey(scheme, token);
      ui.authActions.persistAuthorizationIfNeeded();
    } catch (err) {
      console.warn("docs: could not authorize with the login's token", err);
    }
    return res;
  }

  const ui = SwaggerUIBundle({
    url,
    domNode: root,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    deepLinking: true,
    // "Try it out" is open on every operation; "Authorize" keeps its token across reloads.
    tryItOutEnabled: true,
    persistAuthorization: true,
    displayOperationId: true,
    displayRequestDuration: true,
    filter: true,
    // The default asks validator.swagger.io for a badge: nothing here leaves this origin.
    validatorUrl: null,
    responseInterceptor: authorizeFromLogin,
  });
  // As Swagger UI's own page does: `ui` in the browser's console reaches its API.
  globalThis.ui = ui;
})();

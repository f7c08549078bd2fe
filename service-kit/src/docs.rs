//! The OpenAPI document (`GET /openapi.json`, OpenAPI 3.1 by utoipa) and
//! interactive docs (`GET /docs`, Swagger UI bundled in the binary by
//! utoipa-swagger-ui's `vendored` feature: nothing is fetched at build or
//! run time). Each service derives its document from its handlers'
//! `#[utoipa::path]` attributes; this adds what both share.

use actix_web::{web, HttpResponse};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::OpenApi;

use crate::http::Routes;

/// The security schemes our handlers name: `bearer` (a user's access
/// token) and `service` (a service token, or on the auth service's
/// internal routes `AUTH_SERVICE_API_KEY`).
pub struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut user = Http::new(HttpAuthScheme::Bearer);
        user.bearer_format = Some("JWT".into());
        user.description = Some("A user's access token from the auth service".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(user));
        let mut service = Http::new(HttpAuthScheme::Bearer);
        service.description = Some(format!(
            "A service token (`{}...`) with the route's scope; the auth service's \
             internal routes also take AUTH_SERVICE_API_KEY",
            shared_types::SERVICE_TOKEN_PREFIX
        ));
        components.add_security_scheme("service", SecurityScheme::Http(service));
    }
}

/// The documentation's own routes, which the document does not list.
pub const DOC_ROUTES: &[(&str, &str)] = &[
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/{_:.*}"),
];

impl Routes<'_> {
    /// Serves `openapi` at `/openapi.json` and Swagger UI at `/docs/`.
    pub fn docs(&mut self, openapi: OpenApi) -> &mut Self {
        let ui = utoipa_swagger_ui::SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", openapi);
        self.register(DOC_ROUTES, ui);
        self.route_unlisted(
            "/docs",
            web::get().to(|| async {
                HttpResponse::PermanentRedirect()
                    .insert_header(("location", "/docs/"))
                    .finish()
            }),
        );
        self
    }
}

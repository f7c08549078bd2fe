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
/// token) and `service` (a service token with the route's scope), which
/// `service` describes further (what else the service takes there).
pub struct SecuritySchemes {
    pub service: &'static str,
}

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut user = Http::new(HttpAuthScheme::Bearer);
        user.bearer_format = Some("JWT".into());
        user.description = Some("A user's access token from the auth service".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(user));
        let mut service = Http::new(HttpAuthScheme::Bearer);
        service.description = Some(format!(
            "A service token (`{}...`) with the route's scope{}",
            shared_types::SERVICE_TOKEN_PREFIX,
            self.service
        ));
        components.add_security_scheme("service", SecurityScheme::Http(service));
    }
}

/// Every operation answers its errors as problem details (RFC 9457): the
/// `4XX` and `5XX` responses are added here, once, instead of on each
/// handler's `#[utoipa::path]`. An operation that says more about its
/// errors (e.g. a 409 worth naming) keeps its own description.
pub struct ProblemResponses;

impl utoipa::Modify for ProblemResponses {
    fn modify(&self, openapi: &mut OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        use utoipa::{PartialSchema, ToSchema};
        let components = openapi.components.get_or_insert_with(Default::default);
        components
            .schemas
            .entry(shared_types::Problem::name().into_owned())
            .or_insert_with(shared_types::Problem::schema);
        let problem = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/problem+json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name(shared_types::Problem::name())))
                            .build(),
                    )
                    .build(),
            )
        };
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                responses
                    .entry("4XX".into())
                    .or_insert_with(|| problem("Problem details (RFC 9457); `code` says which"));
                responses.entry("5XX".into()).or_insert_with(|| {
                    problem("Problem details; 503 when a dependency is unavailable")
                });
            }
        }
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

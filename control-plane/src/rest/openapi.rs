//! The OpenAPI 3.1 document served at `/openapi.json`.

use utoipa::Modify;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::handlers;

/// Every REST operation and schema.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Portcullis control plane API", description = "Manage proxies, routes, services, tokens and data planes."),
    paths(
        handlers::health, handlers::healthz, handlers::readyz,
        handlers::list_proxies, handlers::create_proxy, handlers::get_proxy, handlers::update_proxy, handlers::delete_proxy,
        handlers::set_proxy_auth, handlers::get_proxy_auth, handlers::clear_proxy_auth,
        handlers::set_proxy_resource, handlers::get_proxy_resource, handlers::clear_proxy_resource,
        handlers::list_routes, handlers::create_route, handlers::get_route, handlers::delete_route,
        handlers::list_services, handlers::register_service, handlers::get_service, handlers::delete_service,
        handlers::list_tokens, handlers::create_token, handlers::delete_token,
        handlers::list_dataplanes,
        handlers::list_certificates, handlers::create_certificate, handlers::get_certificate,
        handlers::certificate_status, handlers::renew_certificate, handlers::delete_certificate,
        handlers::upload_certificate, handlers::export_certificate, handlers::convert_certificate,
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

//! `AdminService`: one line of glue per RPC.

use portcullis_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::{api_caller, ok};
use crate::authenticator::Authenticator;
use crate::service::ControlPlane;

/// The admin RPCs the CLI uses.
pub struct AdminApi {
    cp: ControlPlane,
    authn: Authenticator,
}

impl AdminApi {
    pub(super) fn new(cp: ControlPlane, authn: Authenticator) -> Self {
        Self { cp, authn }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl pb::admin_service_server::AdminService for AdminApi {
    async fn status(&self, req: Request<pb::Empty>) -> Reply<pb::StatusReply> {
        api_caller(&self.authn, &req).await?;
        let h = self.cp.health().await;
        ok(pb::StatusReply {
            version: h.version.into(),
            store_ok: h.store_ok,
            store_backend: h.store_backend.into(),
            config_version: h.config_version,
            connected_data_planes: h.connected_data_planes,
        })
    }

    async fn create_proxy(&self, req: Request<pb::ProxyInput>) -> Reply<pb::ProxyTarget> {
        let c = api_caller(&self.authn, &req).await?;
        ok(self
            .cp
            .create_proxy(&c, req.into_inner().into())
            .await?
            .into())
    }

    async fn get_proxy(&self, req: Request<pb::ByName>) -> Reply<pb::ProxyTarget> {
        let c = api_caller(&self.authn, &req).await?;
        ok(self.cp.get_proxy(&c, &req.get_ref().name).await?.into())
    }

    async fn list_proxies(&self, req: Request<pb::Empty>) -> Reply<pb::ProxyList> {
        let c = api_caller(&self.authn, &req).await?;
        let items = self
            .cp
            .list_proxies(&c)
            .await?
            .into_iter()
            .map(Into::into)
            .collect();
        ok(pb::ProxyList { items })
    }

    async fn update_proxy(&self, req: Request<pb::ProxyPatch>) -> Reply<pb::ProxyTarget> {
        let c = api_caller(&self.authn, &req).await?;
        let patch = req.into_inner();
        let host = patch.hostname.clone();
        ok(self.cp.update_proxy(&c, &host, patch.into()).await?.into())
    }

    async fn delete_proxy(&self, req: Request<pb::ByName>) -> Reply<pb::Empty> {
        let c = api_caller(&self.authn, &req).await?;
        self.cp.delete_proxy(&c, &req.get_ref().name).await?;
        ok(pb::Empty {})
    }

    async fn set_proxy_auth(&self, req: Request<pb::ProxyAuthInput>) -> Reply<pb::ProxyAuthPolicy> {
        let c = api_caller(&self.authn, &req).await?;
        let input = req.into_inner();
        let host = input.hostname.clone();
        let input = crate::model::ProxyAuthInput::try_from(input)?;
        ok(self.cp.set_proxy_auth(&c, &host, input).await?.into())
    }

    async fn get_proxy_auth(&self, req: Request<pb::ByName>) -> Reply<pb::ProxyAuthPolicy> {
        let c = api_caller(&self.authn, &req).await?;
        ok(self
            .cp
            .get_proxy_auth(&c, &req.get_ref().name)
            .await?
            .into())
    }

    async fn clear_proxy_auth(&self, req: Request<pb::ByName>) -> Reply<pb::Empty> {
        let c = api_caller(&self.authn, &req).await?;
        self.cp.clear_proxy_auth(&c, &req.get_ref().name).await?;
        ok(pb::Empty {})
    }

    async fn set_proxy_resource(
        &self,
        req: Request<pb::ProxyResourceInput>,
    ) -> Reply<pb::ProxyResource> {
        let c = api_caller(&self.authn, &req).await?;
        let input = req.into_inner();
        let host = input.hostname.clone();
        let input = crate::model::ProxyResourceInput::try_from(input)?;
        ok(self.cp.set_proxy_resource(&c, &host, input).await?.into())
    }

    async fn get_proxy_resource(&self, req: Request<pb::ByName>) -> Reply<pb::ProxyResource> {
        let c = api_caller(&self.authn, &req).await?;
        ok(self
            .cp
            .get_proxy_resource(&c, &req.get_ref().name)
            .await?
            .into())
    }

    async fn clear_proxy_resource(&self, req: Request<pb::ByName>) -> Reply<pb::Empty> {
        let c = api_caller(&self.authn, &req).await?;
        self.cp
            .clear_proxy_resource(&c, &req.get_ref().name)
            .await?;
        ok(pb::Empty {})
    }

    async fn create_route(&self, req: Request<pb::RouteInput>) -> Reply<pb::Route> {
        let c = api_caller(&self.authn, &req).await?;
        ok(self
            .cp
            .create_route(&c, req.into_inner().into())
            .await?
            .into())
    }

    async fn get_route(&self, req: Request<pb::ByName>) -> Reply<pb::Route> {
        let c = api_caller(&self.authn, &req).await?;
        ok(self.cp.get_route(&c, &req.get_ref().name).await?.into())
    }

    async fn list_routes(&self, req: Request<pb::Empty>) -> Reply<pb::RouteList> {
        let c = api_caller(&self.authn, &req).await?;
        let items = self
            .cp
            .list_routes(&c)
            .await?
            .into_iter()
            .map(Into::into)
            .collect();
        ok(pb::RouteList { items })
    }

    async fn delete_route(&self, req: Request<pb::ByName>) -> Reply<pb::Empty> {
        let c = api_caller(&self.authn, &req).await?;
        self.cp.delete_route(&c, &req.get_ref().name).await?;
        ok(pb::Empty {})
    }

    async fn register_service(&self, req: Request<pb::ServiceInput>) -> Reply<pb::ExternalService> {
        let c = api_caller(&self.authn, &req).await?;
        ok(self
            .cp
            .register_service(&c, req.into_inner().into())
            .await?
            .into())
    }

    async fn get_service(&self, req: Request<pb::ByName>) -> Reply<pb::ExternalService> {
        let c = api_caller(&self.authn, &req).await?;
        ok(self.cp.get_service(&c, &req.get_ref().name).await?.into())
    }

    async fn list_services(&self, req: Request<pb::Empty>) -> Reply<pb::ServiceList> {
        let c = api_caller(&self.authn, &req).await?;
        let items = self
            .cp
            .list_services(&c)
            .await?
            .into_iter()
            .map(Into::into)
            .collect();
        ok(pb::ServiceList { items })
    }

    async fn delete_service(&self, req: Request<pb::ByName>) -> Reply<pb::Empty> {
        let c = api_caller(&self.authn, &req).await?;
        self.cp.delete_service(&c, &req.get_ref().name).await?;
        ok(pb::Empty {})
    }

    async fn create_token(&self, req: Request<pb::TokenInput>) -> Reply<pb::CreatedToken> {
        let c = api_caller(&self.authn, &req).await?;
        let created = self.cp.create_token(&c, req.into_inner().into()).await?;
        ok(pb::CreatedToken {
            token: Some(created.token.into()),
            secret: created.secret,
        })
    }

    async fn list_tokens(&self, req: Request<pb::Empty>) -> Reply<pb::TokenList> {
        let c = api_caller(&self.authn, &req).await?;
        let items = self
            .cp
            .list_tokens(&c)
            .await?
            .into_iter()
            .map(Into::into)
            .collect();
        ok(pb::TokenList { items })
    }

    async fn delete_token(&self, req: Request<pb::ByName>) -> Reply<pb::Empty> {
        let c = api_caller(&self.authn, &req).await?;
        self.cp.delete_token(&c, &req.get_ref().name).await?;
        ok(pb::Empty {})
    }

    async fn list_data_planes(&self, req: Request<pb::Empty>) -> Reply<pb::DataPlaneList> {
        let c = api_caller(&self.authn, &req).await?;
        let list = self.cp.list_dataplanes(&c).await?;
        ok(pb::DataPlaneList {
            current_version: list.current_version,
            items: list.items.into_iter().map(Into::into).collect(),
        })
    }

    async fn create_certificate(
        &self,
        req: Request<pb::CertificateInput>,
    ) -> Reply<pb::Certificate> {
        let c = api_caller(&self.authn, &req).await?;
        let input = crate::model::CertificateInput::try_from(req.into_inner())?;
        ok(self.cp.create_certificate(&c, input).await?.into())
    }

    async fn get_certificate(&self, req: Request<pb::ByName>) -> Reply<pb::Certificate> {
        let c = api_caller(&self.authn, &req).await?;
        ok(self
            .cp
            .get_certificate(&c, &req.get_ref().name)
            .await?
            .into())
    }

    async fn list_certificates(&self, req: Request<pb::Empty>) -> Reply<pb::CertificateList> {
        let c = api_caller(&self.authn, &req).await?;
        let items = self
            .cp
            .list_certificates(&c)
            .await?
            .into_iter()
            .map(Into::into)
            .collect();
        ok(pb::CertificateList { items })
    }

    async fn renew_certificate(&self, req: Request<pb::ByName>) -> Reply<pb::Certificate> {
        let c = api_caller(&self.authn, &req).await?;
        ok(self
            .cp
            .renew_certificate(&c, &req.get_ref().name)
            .await?
            .into())
    }

    async fn delete_certificate(&self, req: Request<pb::ByName>) -> Reply<pb::Empty> {
        let c = api_caller(&self.authn, &req).await?;
        self.cp
            .delete_certificate(&c, &req.get_ref().name, req.get_ref().force)
            .await?;
        ok(pb::Empty {})
    }

    async fn upload_certificate(
        &self,
        req: Request<pb::CertificateUpload>,
    ) -> Reply<pb::Certificate> {
        let c = api_caller(&self.authn, &req).await?;
        ok(self
            .cp
            .upload_certificate(&c, req.into_inner().into())
            .await?
            .into())
    }

    async fn export_certificate(
        &self,
        req: Request<pb::ExportCertificateRequest>,
    ) -> Reply<pb::CertificateExport> {
        let c = api_caller(&self.authn, &req).await?;
        let r = req.get_ref();
        ok(self
            .cp
            .export_certificate(&c, &r.name, r.include_private_key)
            .await?
            .into())
    }

    async fn convert_certificate_to_production(
        &self,
        req: Request<pb::ByName>,
    ) -> Reply<pb::Certificate> {
        let c = api_caller(&self.authn, &req).await?;
        ok(self
            .cp
            .convert_to_production(&c, &req.get_ref().name)
            .await?
            .into())
    }
}

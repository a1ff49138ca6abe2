//! `anonctl config`: the daemon's persisted configuration (the proxy).

use anonchat_ipc::AnonchatClient as _;

use crate::commands::Ctx;
use crate::fail::Fail;
use crate::show;

/// `config`: shows the daemon's configuration.
pub(crate) async fn show(ctx: &Ctx) -> Result<(), Fail> {
    let c = ctx.connect().await?;
    show::config(&c.config().await?, ctx.json);
    Ok(())
}

/// `config proxy URL|none`: sets or removes the proxy.
pub(crate) async fn proxy(ctx: &Ctx, url: &str) -> Result<(), Fail> {
    let c = ctx.connect().await?;
    let proxy = (url != "none").then(|| url.to_owned());
    show::config(&c.set_proxy(proxy).await?, ctx.json);
    Ok(())
}

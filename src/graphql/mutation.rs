//! The one seam every mutation passes through after its service committed: the cache
//! tags the change made stale are invalidated before the response is sent.
use super::context::Services;
use crate::services::Changed;
use async_graphql::Context;

pub async fn finish<T>(ctx: &Context<'_>, changed: Changed<T>) -> async_graphql::Result<T> {
    if let (Ok(services), Ok(request)) = (
        ctx.data::<Services>(),
        ctx.data::<super::context::RequestContext>(),
    ) {
        services
            .cache
            .invalidate_recorded(&request.actor.tenant, &changed.tags, changed.recorded)
            .await;
    }
    Ok(changed.value)
}

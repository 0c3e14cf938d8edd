//! Statistics: top products (public), sales and customer statistics (STAFF/ADMIN).
//! All three are cached (modules top_products, sales_stats, customer_stats) and dropped
//! by the `stats` tag when an order completes or is cancelled, at most once per cache
//! outbox round (`Cache::coalesce`): under checkout load they stay cache hits.
use super::context::ContextExt;
use super::types::{Customer, Product, db_error};
use crate::cache::{FieldCache, FieldDeclarations, Scope};
use crate::checkout::model::PaymentMethod;
use crate::domain::Money;
use crate::error::{AppError, GqlResultExt};
use crate::services::stats::{self, Granularity, ProductSalesRow};
use crate::services::tags;
use async_graphql::{Context, Object, SimpleObject};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

pub struct ProductSales(ProductSalesRow);

#[Object]
impl ProductSales {
    async fn product(&self, ctx: &Context<'_>) -> async_graphql::Result<Product> {
        let product = ctx
            .loaders()?
            .products
            .load_one(self.0.product_id)
            .await
            .map_err(db_error)?;
        // Ordered products cannot be deleted (a foreign key restricts it).
        product
            .map(Product::new)
            .ok_or_else(|| AppError::not_found("product", self.0.product_id).to_graphql())
    }
    async fn units_sold(&self) -> i64 {
        self.0.units
    }
    async fn revenue(&self) -> Decimal {
        Money::from_cents(self.0.revenue_cents).to_decimal()
    }
}

#[derive(SimpleObject)]
pub struct SalesPeriod {
    /// `YYYY-MM` or `YYYY-MM-DD` (UTC).
    period: String,
    orders: i64,
    revenue: Decimal,
    refunds: Decimal,
}

#[derive(SimpleObject)]
pub struct PaymentMethodRevenue {
    method: PaymentMethod,
    orders: i64,
    revenue: Decimal,
}

#[derive(SimpleObject)]
pub struct SalesStats {
    series: Vec<SalesPeriod>,
    orders: i64,
    revenue: Decimal,
    refunds: Decimal,
    /// Revenue less refunds.
    net_revenue: Decimal,
    average_ticket: Decimal,
    revenue_by_payment_method: Vec<PaymentMethodRevenue>,
    top_products: Vec<ProductSales>,
}

#[derive(SimpleObject)]
pub struct MonthCount {
    period: String,
    count: i64,
}

pub struct ActiveCustomer(stats::ActiveCustomerRow);

#[Object]
impl ActiveCustomer {
    async fn customer(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Customer>> {
        let customer = ctx
            .loaders()?
            .customers
            .load_one(self.0.customer_id)
            .await
            .map_err(db_error)?;
        Ok(customer.map(Customer::new))
    }
    async fn orders(&self) -> i64 {
        self.0.orders
    }
    async fn spent(&self) -> Decimal {
        Money::from_cents(self.0.spent_cents).to_decimal()
    }
}

#[derive(SimpleObject)]
pub struct CustomerStats {
    new_customers_per_month: Vec<MonthCount>,
    most_active_customers: Vec<ActiveCustomer>,
    /// Customers with at least one completed order.
    buyers: i64,
    /// Share of buyers with two or more completed orders (0 to 1).
    repeat_purchase_rate: f64,
}

fn money(cents: i64) -> Decimal {
    Money::from_cents(cents).to_decimal()
}

#[derive(Default)]
pub struct StatsQuery;

impl FieldDeclarations for StatsQuery {
    const FIELDS: &'static [FieldCache] = &[
        FieldCache::cached("topProducts", "top_products", 300, Scope::Public).tags(&[tags::STATS]),
        FieldCache::cached("salesStats", "sales_stats", 300, Scope::Private).tags(&[tags::STATS]),
        // New customers per month change with every sign-up, not only with orders.
        FieldCache::cached("customerStats", "customer_stats", 600, Scope::Private)
            .tags(&[tags::STATS, tags::CUSTOMERS]),
    ];
}

#[Object]
impl StatsQuery {
    /// The most purchased products by units, from completed orders.
    /// Cached: may lag completed and cancelled orders by up to one second.
    #[graphql(complexity = "super::limits::weighted(limit, 10, child_complexity)")]
    async fn top_products(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 10)] limit: Option<i32>,
    ) -> async_graphql::Result<Vec<ProductSales>> {
        let rows = stats::top_products(ctx.db()?, ctx.actor()?, limit.unwrap_or(10), (None, None))
            .await
            .gql()?;
        Ok(rows.into_iter().map(ProductSales).collect())
    }

    /// STAFF/ADMIN: orders, revenue and refunds per period, average ticket, revenue by
    /// payment method and top products, for orders placed in [from, to).
    /// Cached: may lag completed and cancelled orders by up to one second.
    async fn sales_stats(
        &self,
        ctx: &Context<'_>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        #[graphql(default_with = "Some(Granularity::Month)")] granularity: Option<Granularity>,
    ) -> async_graphql::Result<SalesStats> {
        let found = stats::sales(
            ctx.db()?,
            ctx.actor()?,
            from,
            to,
            granularity.unwrap_or(Granularity::Month),
        )
        .await
        .gql()?;
        let average = if found.orders > 0 {
            (money(found.revenue_cents) / Decimal::from(found.orders))
                .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
        } else {
            Decimal::ZERO
        };
        Ok(SalesStats {
            orders: found.orders,
            revenue: money(found.revenue_cents),
            refunds: money(found.refunds_cents),
            net_revenue: money(found.revenue_cents - found.refunds_cents),
            average_ticket: average,
            series: found
                .series
                .into_iter()
                .map(|p| SalesPeriod {
                    period: p.period,
                    orders: p.orders,
                    revenue: money(p.revenue_cents),
                    refunds: money(p.refunds_cents),
                })
                .collect(),
            revenue_by_payment_method: found
                .by_method
                .into_iter()
                .map(|(method, orders, revenue)| PaymentMethodRevenue {
                    method,
                    orders,
                    revenue: money(revenue),
                })
                .collect(),
            top_products: found.top_products.into_iter().map(ProductSales).collect(),
        })
    }

    /// STAFF/ADMIN: new customers per month, most active customers, repeat-purchase rate.
    /// Cached: may lag completed and cancelled orders by up to one second.
    async fn customer_stats(&self, ctx: &Context<'_>) -> async_graphql::Result<CustomerStats> {
        let found = stats::customers(ctx.db()?, ctx.actor()?).await.gql()?;
        Ok(CustomerStats {
            new_customers_per_month: found
                .new_per_month
                .into_iter()
                .map(|r| MonthCount {
                    period: r.period,
                    count: r.count,
                })
                .collect(),
            most_active_customers: found.most_active.into_iter().map(ActiveCustomer).collect(),
            buyers: found.buyers,
            repeat_purchase_rate: if found.buyers > 0 {
                found.repeat_buyers as f64 / found.buyers as f64
            } else {
                0.0
            },
        })
    }
}

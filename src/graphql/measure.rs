//! Measures a document before validation: fragment cycles, nesting, field depth,
//! fields with fragments expanded (a cheap lower bound of complexity), aliases per
//! document and root fields per operation. Every fragment is measured once (memoized),
//! so a document costs time linear in its size however its fragments spread.
use super::limits::{Limits, too_complex};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{ServerError, ServerResult};
use std::collections::HashMap;

/// The measure of a selection set, fragments expanded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Size {
    /// Fields, every spread counted in full.
    fields: usize,
    aliases: usize,
    /// Fields at this level (a spread or inline fragment adds its own).
    top: usize,
    /// Deepest chain of fields.
    depth: usize,
    /// Deepest chain of selection sets and fragments.
    nest: usize,
}

/// Directives one field (or fragment) may carry: `@include`, `@skip` and a few more
/// are all a client needs; a thousand unknown ones would each cost an error.
pub const MAX_DIRECTIVES_PER_FIELD: usize = 4;
/// Directives a whole document may carry, each fragment counted once.
pub const MAX_DIRECTIVES: usize = 50;

impl Size {
    fn add(&mut self, other: Self) {
        self.fields = self.fields.saturating_add(other.fields);
        self.aliases = self.aliases.saturating_add(other.aliases);
        self.top = self.top.saturating_add(other.top);
        self.depth = self.depth.max(other.depth);
        self.nest = self.nest.max(other.nest);
    }
}

enum Memo {
    Measuring,
    Done(Size),
}

struct Walker<'a> {
    doc: &'a ExecutableDocument,
    fragments: HashMap<&'a str, Memo>,
    max_nest: usize,
    /// Directives seen, each written directive once (fragments are measured once).
    directives: usize,
}

impl<'a> Walker<'a> {
    fn too_deep() -> ServerError {
        too_complex("the document is nested too deeply")
    }

    fn directives(&mut self, count: usize) -> ServerResult<()> {
        if count > MAX_DIRECTIVES_PER_FIELD {
            return Err(too_complex(format!(
                "a field carries {count} directives; the limit is {MAX_DIRECTIVES_PER_FIELD}"
            )));
        }
        self.directives = self.directives.saturating_add(count);
        if self.directives > MAX_DIRECTIVES {
            return Err(too_complex(format!(
                "the document carries more than {MAX_DIRECTIVES} directives"
            )));
        }
        Ok(())
    }

    fn selection_set(&mut self, set: &'a SelectionSet, level: usize) -> ServerResult<Size> {
        if level > self.max_nest {
            return Err(Self::too_deep());
        }
        let mut total = Size::default();
        for selection in &set.items {
            let size = match &selection.node {
                Selection::Field(field) => {
                    self.directives(field.node.directives.len())?;
                    let children = &field.node.selection_set.node;
                    let child = if children.items.is_empty() {
                        Size::default()
                    } else {
                        let child = self.selection_set(children, level + 1)?;
                        Size {
                            nest: child.nest + 1,
                            ..child
                        }
                    };
                    Size {
                        fields: child.fields.saturating_add(1),
                        aliases: child.aliases + usize::from(field.node.alias.is_some()),
                        top: 1,
                        depth: child.depth + 1,
                        nest: child.nest,
                    }
                }
                Selection::InlineFragment(inline) => {
                    self.directives(inline.node.directives.len())?;
                    let inner = self.selection_set(&inline.node.selection_set.node, level + 1)?;
                    Size {
                        nest: inner.nest + 1,
                        ..inner
                    }
                }
                Selection::FragmentSpread(spread) => {
                    self.directives(spread.node.directives.len())?;
                    let inner = self.fragment(spread.node.fragment_name.node.as_str(), level)?;
                    Size {
                        nest: inner.nest + 1,
                        ..inner
                    }
                }
            };
            if level + size.nest > self.max_nest {
                return Err(Self::too_deep());
            }
            total.add(size);
        }
        Ok(total)
    }

    fn fragment(&mut self, name: &'a str, level: usize) -> ServerResult<Size> {
        match self.fragments.get(name) {
            Some(Memo::Done(size)) => return Ok(*size),
            Some(Memo::Measuring) => {
                return Err(too_complex(format!(
                    "fragment `{name}` spreads itself (directly or through other fragments)"
                )));
            }
            None => {}
        }
        // An unknown fragment measures nothing here; validation reports it.
        let Some(definition) = self.doc.fragments.get(name) else {
            return Ok(Size::default());
        };
        self.fragments.insert(name, Memo::Measuring);
        self.directives(definition.node.directives.len())?;
        let size = self.selection_set(&definition.node.selection_set.node, level + 1)?;
        self.fragments.insert(name, Memo::Done(size));
        Ok(size)
    }
}

/// Refuses a document over any of the limits measured before validation.
pub fn check(doc: &ExecutableDocument, limits: &Limits) -> ServerResult<()> {
    if !limits.enabled {
        return Ok(());
    }
    let mut walker = Walker {
        doc,
        fragments: HashMap::new(),
        max_nest: limits.nesting(),
        directives: 0,
    };
    // Every fragment, used or not, so that no cycle escapes.
    for name in doc.fragments.keys() {
        walker.fragment(name.as_str(), 0)?;
    }
    let mut aliases = 0usize;
    for (_, operation) in doc.operations.iter() {
        walker.directives(operation.node.directives.len())?;
        let size = walker.selection_set(&operation.node.selection_set.node, 0)?;
        if size.depth > limits.depth {
            return Err(too_complex(format!(
                "the query is nested {} levels deep; the limit is {}",
                size.depth, limits.depth
            )));
        }
        if size.fields > limits.complexity {
            return Err(too_complex(format!(
                "the document selects {} fields once its fragments are expanded; the limit is {}",
                size.fields, limits.complexity
            )));
        }
        if size.top > limits.root_fields {
            return Err(too_complex(format!(
                "an operation selects {} root fields; the limit is {}",
                size.top, limits.root_fields
            )));
        }
        aliases = aliases.saturating_add(size.aliases);
    }
    if aliases > limits.aliases {
        return Err(too_complex(format!(
            "the document uses {aliases} aliases; the limit is {}",
            limits.aliases
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::parser;

    fn measure(query: &str) -> ServerResult<()> {
        let doc = parser::parse_query(query).unwrap_or_else(|e| panic!("{e}"));
        check(&doc, &Limits::default())
    }

    fn refused(query: &str) -> String {
        match measure(query) {
            Ok(()) => panic!("accepted: {query}"),
            Err(err) => {
                let code = err
                    .extensions
                    .as_ref()
                    .and_then(|e| e.get("code"))
                    .map(ToString::to_string);
                assert_eq!(code.as_deref(), Some("\"QUERY_TOO_COMPLEX\""));
                err.message
            }
        }
    }

    #[test]
    fn ordinary_documents_pass() {
        assert!(measure("{ products(first: 5) { edges { node { id name } } } }").is_ok());
        assert!(
            measure("query { a: product(id: 1) { ...P } b: product(id: 2) { ...P } } fragment P on Product { id name }")
                .is_ok()
        );
    }

    #[test]
    fn cycles_are_refused_even_in_unused_fragments() {
        assert!(
            refused("{ __typename } fragment A on Query { ...B } fragment B on Query { ...A }")
                .contains("spreads itself")
        );
        assert!(refused("{ ...A } fragment A on Query { ...A }").contains("spreads itself"));
    }

    #[test]
    fn aliases_are_counted_through_fragments() {
        let fragment: String = (0..10).map(|i| format!("a{i}: __typename ")).collect();
        let query = format!(
            "{{ x: __typename a {{ ...F }} b {{ ...F }} c {{ ...F }} }} fragment F on Query {{ {fragment} }}"
        );
        // 3 spreads of 10 aliases + 1.
        assert!(refused(&query).contains("31 aliases"));
    }

    #[test]
    fn a_fragment_bomb_is_measured_in_linear_time_and_refused() {
        let mut query = String::from("{ ...F25 } fragment F0 on Query { __typename }");
        for i in 1..=25 {
            query.push_str(&format!(
                " fragment F{i} on Query {{ ...F{} ...F{} }}",
                i - 1,
                i - 1
            ));
        }
        assert!(refused(&query).contains("fields once its fragments are expanded"));
    }

    #[test]
    fn directives_are_bounded_per_field_and_per_document() {
        let many = "@aa ".repeat(1000);
        assert!(refused(&format!("{{ __typename {many} }}")).contains("1000 directives"));
        let spread: String = (0..60)
            .map(|i| format!("f{i}: __typename @include(if: true) "))
            .collect();
        assert!(refused(&format!("{{ {spread} }}")).contains("directives"));
        assert!(measure("{ __typename @include(if: true) @skip(if: false) }").is_ok());
    }

    #[test]
    fn depth_and_root_fields_are_bounded() {
        let levels = Limits::default().depth + 1;
        let deep = format!("{}{}", "{ a ".repeat(levels), "}".repeat(levels));
        assert!(refused(&deep).contains(&format!("{levels} levels deep")));
        let wide: String = (0..21).map(|i| format!("f{i} ")).collect();
        assert!(refused(&format!("{{ {wide} }}")).contains("21 root fields"));
    }
}

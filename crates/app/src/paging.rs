//! Cursor paging: ask the store for one item more than the page holds, and
//! the last item of a full page is the cursor of the next.

/// A page of at most `limit` items from `items` (fetched with `limit + 1`),
/// and the cursor of the next page if there is one.
pub fn split<T, C>(mut items: Vec<T>, limit: u32, cursor: impl Fn(&T) -> C) -> (Vec<T>, Option<C>) {
    let limit = limit as usize;
    if items.len() <= limit {
        return (items, None);
    }
    items.truncate(limit);
    let next = items.last().map(cursor);
    (items, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_page_points_at_the_next_and_a_short_one_ends() {
        assert_eq!(split(vec![1, 2, 3], 2, |n| *n), (vec![1, 2], Some(2)));
        assert_eq!(split(vec![1, 2], 2, |n| *n), (vec![1, 2], None));
        assert_eq!(split(Vec::<u8>::new(), 2, |n| *n), (vec![], None));
    }
}

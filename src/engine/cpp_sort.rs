//! `std::partial_sort` exactly as libstdc++ performs it, so equal scores end up in the same
//! order as in onnxruntime-genai (Linux builds), which sorts candidate tokens with it.
//!
//! Why it matters: the sort is not stable, and the order of *equal* logits decides which token id
//! sits at which position of the sampling distribution, and so which token a given random draw
//! picks. With f32 logits ties are rare; with float16 logits (fp16 CUDA/DirectML builds run on
//! the CPU) many logits share a value, and any other tie order samples different tokens.
//!
//! libstdc++'s algorithm is a heap selection followed by a heap sort: build a max-heap (under
//! the comparator) of the first `middle` elements, push every later element that compares less
//! than the top through it, then sort the heap by repeatedly moving the top to the end. The heap
//! operations move a "hole" from the top down to a leaf, always to the larger child (the left one
//! on ties), then sift the displaced value up; the exact moves are what fixes the order of ties.

/// Sorts the first `middle` elements of `items` (the smallest under `less`, in order); the rest
/// are left in libstdc++'s order. `middle` must not exceed `items.len()`.
pub fn partial_sort<T: Copy>(items: &mut [T], middle: usize, less: &impl Fn(&T, &T) -> bool) {
    debug_assert!(middle <= items.len());
    heap_select(items, middle, less);
    sort_heap(&mut items[..middle], less);
}

fn heap_select<T: Copy>(items: &mut [T], middle: usize, less: &impl Fn(&T, &T) -> bool) {
    make_heap(&mut items[..middle], less);
    for index in middle..items.len() {
        if middle > 0 && less(&items[index], &items[0]) {
            pop_heap(items, middle, index, less);
        }
    }
}

fn make_heap<T: Copy>(heap: &mut [T], less: &impl Fn(&T, &T) -> bool) {
    let len = heap.len();
    if len < 2 {
        return;
    }
    let mut parent = (len - 2) / 2;
    loop {
        let value = heap[parent];
        adjust_heap(heap, parent, len, value, less);
        if parent == 0 {
            return;
        }
        parent -= 1;
    }
}

fn sort_heap<T: Copy>(heap: &mut [T], less: &impl Fn(&T, &T) -> bool) {
    let mut last = heap.len();
    while last > 1 {
        last -= 1;
        pop_heap(heap, last, last, less);
    }
}

/// Moves the heap's top (of the heap `items[..len]`) to `items[result]` and puts the value that
/// was there into the heap.
fn pop_heap<T: Copy>(items: &mut [T], len: usize, result: usize, less: &impl Fn(&T, &T) -> bool) {
    let value = items[result];
    items[result] = items[0];
    adjust_heap(items, 0, len, value, less);
}

/// Moves the hole at `hole` down to a leaf along the larger children, then sifts `value` up from
/// there (never above `hole`'s starting point).
fn adjust_heap<T: Copy>(items: &mut [T], mut hole: usize, len: usize, value: T, less: &impl Fn(&T, &T) -> bool) {
    let top = hole;
    let mut child = hole;
    while child < (len - 1) / 2 {
        child = 2 * (child + 1);
        if less(&items[child], &items[child - 1]) {
            child -= 1;
        }
        items[hole] = items[child];
        hole = child;
    }
    if len % 2 == 0 && child == (len - 2) / 2 {
        child = 2 * (child + 1);
        items[hole] = items[child - 1];
        hole = child - 1;
    }
    while hole > top {
        let parent = (hole - 1) / 2;
        if !less(&items[parent], &value) {
            break;
        }
        items[hole] = items[parent];
        hole = parent;
    }
    items[hole] = value;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_middle_elements_come_out_sorted() {
        let mut values: Vec<u32> = (0..200).map(|i| (i * 7919 + 13) % 211).collect();
        let mut expected = values.clone();
        expected.sort();
        partial_sort(&mut values, 30, &|a, b| a < b);
        assert_eq!(values[..30], expected[..30]);
        let mut all = values.clone();
        all.sort();
        assert_eq!(all, expected, "a permutation of the input");
        let mut whole = vec![5, 3, 9, 1];
        partial_sort(&mut whole, 4, &|a, b| a < b);
        assert_eq!(whole, vec![1, 3, 5, 9]);
        let mut none = vec![2, 1];
        partial_sort(&mut none, 0, &|a, b| a < b);
        assert_eq!(none, vec![2, 1]);
    }

    /// The order `std::partial_sort` of libstdc++ 12 (g++ 12.2, -O2) leaves, with genai's
    /// comparator `scores[a] > scores[b]`.
    fn libstdcxx_order(scores: &[f32], middle: usize) -> Vec<usize> {
        let mut indices: Vec<usize> = (0..scores.len()).collect();
        partial_sort(&mut indices, middle, &|a: &usize, b: &usize| scores[*a] > scores[*b]);
        indices
    }

    #[test]
    fn ties_are_ordered_as_libstdcxx_orders_them() {
        let scores = [1.0f32, 1.0, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0];
        assert_eq!(libstdcxx_order(&scores, 8), vec![4, 3, 7, 1, 5, 0, 2, 6]);
        assert_eq!(libstdcxx_order(&scores, 3), vec![4, 1, 0, 3, 2, 5, 6, 7]);
        // 1000 scores in five tied groups; the whole permutation is compared through a hash
        // (h = (h * 1000003 + index) mod 1e9+7), printed by the same C++ program.
        let many: Vec<f32> = (0..1000).map(|i| ((i * 37) % 5) as f32).collect();
        let cases = [(1, 248_554_543u64, [2, 0, 1]), (16, 152_033_006, [17, 37, 62]), (50, 920_343_150, [207, 57, 107]), (1000, 497_389_648, [842, 437, 657])];
        for (middle, hash, first) in cases {
            let order = libstdcxx_order(&many, middle);
            assert_eq!(order[..3], first, "middle {middle}");
            let h = order.iter().fold(0u64, |h, &i| (h * 1_000_003 + i as u64) % 1_000_000_007);
            assert_eq!(h, hash, "middle {middle}");
        }
    }
}

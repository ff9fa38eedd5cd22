//! Strings matching a JSON Schema `pattern`: a walk over a regex subset (literals, escapes,
//! classes, `.`, groups with `|` taking the first branch, quantifiers; lookarounds produce
//! nothing), drawing each choice from the seeded [`Filler`].

use super::fill::Filler;

impl Filler<'_> {
    /// Appends a match of the regex alternative starting at `c[*i]`; stops before
    /// its closing `)`, skipping any further `|` alternatives.
    pub(super) fn pattern(&mut self, c: &[char], i: &mut usize, out: &mut String) {
        while let Some(&ch) = c.get(*i) {
            match ch {
                '^' | '$' => *i += 1,
                ')' => return,
                '|' => return skip_group(c, i),
                _ => {
                    let start = *i;
                    let mut atom = self.atom(c, i);
                    let count = quantifier(c, i);
                    let end = *i;
                    for n in 0..count {
                        if out.len() >= 4096 {
                            break; // bounds `((a{256}){256}){256}`
                        }
                        if n > 0 {
                            // Re-generate each repetition so `[a-z]{3}` is not `aaa`.
                            *i = start;
                            atom = self.atom(c, i);
                        }
                        out.push_str(&atom);
                    }
                    *i = end;
                }
            }
        }
    }

    /// A match of the regex atom (group, class, escape or literal) at `c[*i]`.
    fn atom(&mut self, c: &[char], i: &mut usize) -> String {
        let ch = c.get(*i).copied().unwrap_or_default();
        *i += 1;
        let mut inner = String::new();
        match ch {
            '(' => {
                let head: String = c.iter().skip(*i).take(3).collect();
                if ["?=", "?!", "?<=", "?<!"]
                    .iter()
                    .any(|l| head.starts_with(l))
                {
                    skip_group(c, i); // lookaround: zero-width
                } else {
                    if head.starts_with('?') {
                        // Skip `?:`, `?<name>`, `?P<name>`; a flags group `(?i)` stops at `)`.
                        while c.get(*i).is_some_and(|x| !matches!(x, ':' | '>' | ')')) {
                            *i += 1;
                        }
                        *i += usize::from(c.get(*i) != Some(&')'));
                    }
                    self.pattern(c, i, &mut inner);
                }
                *i += 1; // the closing `)`
            }
            '[' => inner.push(self.class(c, i)),
            '\\' => {
                let e = c.get(*i).copied().unwrap_or('\\');
                *i += 1;
                if matches!(e, 'p' | 'P') && c.get(*i) == Some(&'{') {
                    *i += c
                        .iter()
                        .skip(*i)
                        .position(|x| *x == '}')
                        .map_or(0, |p| p + 1);
                }
                inner.extend(escape(e, self.next()));
            }
            '.' => inner.extend(escape('w', self.next())),
            other => inner.push(other),
        }
        inner
    }

    /// One character matching the class whose body starts at `c[*i]` (after `[`).
    fn class(&mut self, c: &[char], i: &mut usize) -> char {
        let negated = c.get(*i) == Some(&'^');
        *i += usize::from(negated);
        let (mut ranges, start) = (Vec::new(), *i);
        while let Some(&ch) = c.get(*i) {
            *i += 1;
            match ch {
                ']' if *i - 1 > start => break,
                '\\' => {
                    let e = c.get(*i).copied().unwrap_or('\\');
                    *i += 1;
                    match e {
                        'd' => ranges.push(('0', '9')),
                        'w' => ranges.extend([('a', 'z'), ('A', 'Z'), ('0', '9'), ('_', '_')]),
                        _ => ranges.extend(escape(e, 0).map(|x| (x, x))),
                    }
                }
                lo if c.get(*i) == Some(&'-') && c.get(*i + 1).is_some_and(|x| *x != ']') => {
                    let hi = c.get(*i + 1).copied().unwrap_or(lo);
                    *i += 2;
                    ranges.push((lo, hi.max(lo)));
                }
                lo => ranges.push((lo, lo)),
            }
        }
        let inside = |x: char| ranges.iter().any(|(a, b)| (*a..=*b).contains(&x));
        if negated {
            return "xqz0_-.AB".chars().find(|x| !inside(*x)).unwrap_or('~');
        }
        let Some(&(a, b)) = ranges.get(self.pick(ranges.len())) else {
            return 'a';
        };
        let span = (u32::from(b) - u32::from(a) + 1).min(26);
        char::from_u32(u32::from(a) + (self.next() % u64::from(span)) as u32).unwrap_or(a)
    }
}

/// The character a regex escape `\e` stands for (`None` for zero-width escapes).
fn escape(e: char, r: u64) -> Option<char> {
    Some(match e {
        'd' => char::from(b'0' + (r % 10) as u8),
        'w' => char::from(b'a' + (r % 26) as u8),
        's' => ' ',
        'D' | 'S' | 'p' | 'P' => 'x',
        'W' => '-',
        'n' => '\n',
        't' => '\t',
        'r' => '\r',
        'b' | 'B' | 'A' | 'z' | 'Z' => return None,
        other => other,
    })
}

/// How many times to repeat the atom before `c[*i]` (1 without a quantifier);
/// advances past the quantifier. `*`/`+` repeat twice, `{n,m}` takes `max(n, 1)`.
fn quantifier(c: &[char], i: &mut usize) -> usize {
    let count = match c.get(*i) {
        Some('?') => 1,
        Some('*' | '+') => 2,
        Some('{') => {
            let Some(len) = c.iter().skip(*i).position(|x| *x == '}') else {
                return 1;
            };
            let body: String = c.iter().skip(*i + 1).take(len - 1).collect();
            *i += len;
            let mut parts = body.split(',').map(|p| p.trim().parse::<usize>().ok());
            match (parts.next().flatten().unwrap_or(1), parts.next()) {
                (n, Some(Some(m))) => n.max(1).min(m),
                (n, _) => n,
            }
        }
        _ => return 1,
    };
    *i += 1;
    *i += usize::from(c.get(*i) == Some(&'?')); // lazy modifier
    count.min(256)
}

/// Advances `*i` to the `)` closing the current group (or the end), not consuming it.
fn skip_group(c: &[char], i: &mut usize) {
    let (mut level, mut in_class) = (0usize, false);
    while let Some(&ch) = c.get(*i) {
        match ch {
            '\\' => *i += 1,
            '[' => in_class = true,
            ']' => in_class = false,
            '(' if !in_class => level += 1,
            ')' if !in_class && level == 0 => return,
            ')' if !in_class => level -= 1,
            _ => {}
        }
        *i += 1;
    }
}

//! Mathematical expressions a researcher writes (`E + A*(n_once + r^phi*n_rec)^(-alpha)`):
//! the parser, and evaluation with the exact gradient by reverse-mode differentiation.
//!
//! Why a parser of our own rather than a crate: `exmex`, the maintained crate that also
//! differentiates, reserves `E` and `e` for Euler's number (`E` is the usual name of a law's
//! floor), orders variables alphabetically, and reports a parse error without its position;
//! `evalexpr` and `fasteval` do not differentiate. The grammar a law needs is small:
//!
//! ```text
//! expr  := term (('+' | '-') term)*
//! term  := unary (('*' | '/') unary)*
//! unary := '-' unary | power
//! power := atom ('^' unary)?                  right-associative: a^b^c = a^(b^c), -a^2 = -(a^2)
//! atom  := number | name | name '(' expr (',' expr)* ')' | '(' expr ')'
//! ```
//!
//! with `**` accepted for `^` and the functions `exp`, `log` (natural; `ln` too), `log10`,
//! `sqrt`, `abs`, `min`, `max`, `sigmoid`. Every name that is not a function is a symbol; the
//! caller says which symbols are parameters and which are variables.
//!
//! An expression compiles to a tape in evaluation order. One forward pass computes every node's
//! value; one backward pass accumulates ∂value/∂symbol for every symbol at once, exactly (no
//! finite differences), so an L-BFGS step costs two passes per point whatever the number of
//! parameters.

use std::fmt;

/// A parse error: where (a character offset into the text), the token found there, and what
/// was expected instead.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub pos: usize,
    pub found: String,
    pub expected: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "at character {}: found {}, expected {}",
            self.pos + 1,
            self.found,
            self.expected
        )
    }
}

impl std::error::Error for ParseError {}

impl ParseError {
    /// The text with a caret under the error, rustc-style.
    pub fn pointing(&self, text: &str) -> String {
        let col = text[..self.pos.min(text.len())].chars().count();
        format!("{self}\n  {text}\n  {}^", " ".repeat(col))
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Func {
    Exp,
    Log,
    Log10,
    Sqrt,
    Abs,
    Min,
    Max,
    Sigmoid,
}

impl Func {
    fn named(name: &str) -> Option<(Func, usize)> {
        Some(match name {
            "exp" => (Func::Exp, 1),
            "log" | "ln" => (Func::Log, 1),
            "log10" => (Func::Log10, 1),
            "sqrt" => (Func::Sqrt, 1),
            "abs" => (Func::Abs, 1),
            "min" => (Func::Min, 2),
            "max" => (Func::Max, 2),
            "sigmoid" => (Func::Sigmoid, 1),
            _ => return None,
        })
    }
}

/// One node of the tape; operands are indices of earlier nodes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Node {
    Const(f64),
    Symbol(usize),
    Neg(usize),
    Add(usize, usize),
    Sub(usize, usize),
    Mul(usize, usize),
    Div(usize, usize),
    Pow(usize, usize),
    Call1(Func, usize),
    Call2(Func, usize, usize),
}

/// A compiled expression over named symbols.
#[derive(Debug, Clone)]
pub struct Expr {
    text: String,
    symbols: Vec<String>,
    tape: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Name(String),
    Op(char),
    End,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Num(v) => format!("the number {v}"),
        Tok::Name(n) => format!("`{n}`"),
        Tok::Op(c) => format!("`{c}`"),
        Tok::End => "the end of the expression".into(),
    }
}

fn lex(text: &str) -> Result<Vec<(usize, Tok)>, ParseError> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (pos, c) = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].1.is_ascii_digit() || chars[i].1 == '.') {
                i += 1;
            }
            // An exponent: 1e-3, 2.5E+10.
            if i < chars.len() && matches!(chars[i].1, 'e' | 'E') {
                let mut j = i + 1;
                if j < chars.len() && matches!(chars[j].1, '+' | '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].1.is_ascii_digit() {
                    i = j;
                    while i < chars.len() && chars[i].1.is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let end = chars.get(i).map_or(text.len(), |c| c.0);
            let s = &text[pos..end];
            let v: f64 = s.parse().map_err(|_| ParseError {
                pos,
                found: format!("`{s}`"),
                expected: "a number".into(),
            })?;
            out.push((pos, Tok::Num(v)));
        } else if c.is_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].1.is_alphanumeric() || chars[i].1 == '_') {
                i += 1;
            }
            let end = chars.get(i).map_or(text.len(), |c| c.0);
            out.push((pos, Tok::Name(text[pos..end].to_string())));
        } else if c == '*' && chars.get(i + 1).is_some_and(|n| n.1 == '*') {
            out.push((pos, Tok::Op('^')));
            i += 2;
        } else if "+-*/^(),".contains(c) {
            out.push((pos, Tok::Op(c)));
            i += 1;
        } else {
            return Err(ParseError {
                pos,
                found: format!("`{c}`"),
                expected: "a number, a name, an operator (+ - * / ^) or a parenthesis".into(),
            });
        }
    }
    out.push((text.len(), Tok::End));
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    at: usize,
    symbols: Vec<String>,
    tape: Vec<Node>,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.at].1
    }
    fn error(&self, expected: &str) -> ParseError {
        let (pos, tok) = &self.toks[self.at];
        ParseError {
            pos: *pos,
            found: describe(tok),
            expected: expected.into(),
        }
    }
    fn push(&mut self, n: Node) -> usize {
        self.tape.push(n);
        self.tape.len() - 1
    }
    fn expect(&mut self, c: char, expected: &str) -> Result<(), ParseError> {
        if *self.peek() == Tok::Op(c) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error(expected))
        }
    }
    fn expr(&mut self) -> Result<usize, ParseError> {
        let mut a = self.term()?;
        while let Tok::Op(c @ ('+' | '-')) = *self.peek() {
            self.at += 1;
            let b = self.term()?;
            a = self.push(if c == '+' {
                Node::Add(a, b)
            } else {
                Node::Sub(a, b)
            });
        }
        Ok(a)
    }
    fn term(&mut self) -> Result<usize, ParseError> {
        let mut a = self.unary()?;
        while let Tok::Op(c @ ('*' | '/')) = *self.peek() {
            self.at += 1;
            let b = self.unary()?;
            a = self.push(if c == '*' {
                Node::Mul(a, b)
            } else {
                Node::Div(a, b)
            });
        }
        Ok(a)
    }
    fn unary(&mut self) -> Result<usize, ParseError> {
        if *self.peek() == Tok::Op('-') {
            self.at += 1;
            let a = self.unary()?;
            return Ok(self.push(Node::Neg(a)));
        }
        if *self.peek() == Tok::Op('+') {
            self.at += 1;
            return self.unary();
        }
        self.power()
    }
    fn power(&mut self) -> Result<usize, ParseError> {
        let a = self.atom()?;
        if *self.peek() == Tok::Op('^') {
            self.at += 1;
            let b = self.unary()?;
            return Ok(self.push(Node::Pow(a, b)));
        }
        Ok(a)
    }
    fn atom(&mut self) -> Result<usize, ParseError> {
        const OPERAND: &str = "a number, a name or `(`";
        match self.peek().clone() {
            Tok::Num(v) => {
                self.at += 1;
                Ok(self.push(Node::Const(v)))
            }
            Tok::Op('(') => {
                self.at += 1;
                let a = self.expr()?;
                self.expect(')', "`)` or an operator")?;
                Ok(a)
            }
            Tok::Name(name) => {
                let name_at = self.at;
                self.at += 1;
                if *self.peek() == Tok::Op('(') {
                    let Some((f, arity)) = Func::named(&name) else {
                        self.at = name_at;
                        return Err(self.error(
                            "a known function (exp, log, ln, log10, sqrt, abs, min, max, sigmoid)",
                        ));
                    };
                    self.at += 1;
                    let a = self.expr()?;
                    let node = if arity == 2 {
                        self.expect(',', &format!("`,` ({name} takes two arguments)"))?;
                        let b = self.expr()?;
                        Node::Call2(f, a, b)
                    } else {
                        Node::Call1(f, a)
                    };
                    self.expect(')', &format!("`)` closing {name}("))?;
                    return Ok(self.push(node));
                }
                let k = match self.symbols.iter().position(|s| *s == name) {
                    Some(k) => k,
                    None => {
                        self.symbols.push(name);
                        self.symbols.len() - 1
                    }
                };
                Ok(self.push(Node::Symbol(k)))
            }
            _ => Err(self.error(OPERAND)),
        }
    }
}

impl Expr {
    /// Parses `text`; its symbols are listed in order of first appearance.
    pub fn parse(text: &str) -> Result<Expr, ParseError> {
        let mut p = Parser {
            toks: lex(text)?,
            at: 0,
            symbols: Vec::new(),
            tape: Vec::new(),
        };
        p.expr()?;
        if *p.peek() != Tok::End {
            return Err(p.error("an operator or the end of the expression"));
        }
        Ok(Expr {
            text: text.trim().to_string(),
            symbols: p.symbols,
            tape: p.tape,
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The names the expression reads, in order of first appearance.
    pub fn symbols(&self) -> &[String] {
        &self.symbols
    }

    /// The expression with its symbols renumbered: `to[k]` is the slot of symbol `k` in the
    /// value slice later passed to [`Expr::eval`] (so parameters and variables can share one).
    pub fn bind(&self, to: &[usize]) -> Bound {
        assert_eq!(to.len(), self.symbols.len());
        let tape = self
            .tape
            .iter()
            .map(|n| match *n {
                Node::Symbol(k) => Node::Symbol(to[k]),
                other => other,
            })
            .collect();
        Bound { tape }
    }
}

/// An expression whose symbols read fixed slots of a value slice.
#[derive(Debug, Clone)]
pub struct Bound {
    tape: Vec<Node>,
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl Bound {
    /// The value at `x` (every slot the expression reads).
    pub fn value(&self, x: &[f64]) -> f64 {
        let mut v = vec![0.0; self.tape.len()];
        self.forward(x, &mut v);
        *v.last().unwrap_or(&f64::NAN)
    }

    fn forward(&self, x: &[f64], v: &mut [f64]) {
        for (i, n) in self.tape.iter().enumerate() {
            v[i] = match *n {
                Node::Const(c) => c,
                Node::Symbol(k) => x[k],
                Node::Neg(a) => -v[a],
                Node::Add(a, b) => v[a] + v[b],
                Node::Sub(a, b) => v[a] - v[b],
                Node::Mul(a, b) => v[a] * v[b],
                Node::Div(a, b) => v[a] / v[b],
                Node::Pow(a, b) => v[a].powf(v[b]),
                Node::Call1(f, a) => match f {
                    Func::Exp => v[a].exp(),
                    Func::Log => v[a].ln(),
                    Func::Log10 => v[a].log10(),
                    Func::Sqrt => v[a].sqrt(),
                    Func::Abs => v[a].abs(),
                    Func::Sigmoid => sigmoid(v[a]),
                    Func::Min | Func::Max => unreachable!("two-argument function"),
                },
                Node::Call2(f, a, b) => match f {
                    Func::Min => v[a].min(v[b]),
                    Func::Max => v[a].max(v[b]),
                    _ => unreachable!("one-argument function"),
                },
            };
        }
    }

    /// The value at `x`, adding ∂value/∂x_k into `grad[k]` for every slot (callers zero it).
    /// `scratch` is reused between calls (two tape-length buffers).
    pub fn eval_grad(&self, x: &[f64], grad: &mut [f64], scratch: &mut Vec<f64>) -> f64 {
        let n = self.tape.len();
        scratch.clear();
        scratch.resize(2 * n, 0.0);
        let (v, adj) = scratch.split_at_mut(n);
        self.forward(x, v);
        adj[n - 1] = 1.0;
        for i in (0..n).rev() {
            let g = adj[i];
            if g == 0.0 {
                continue;
            }
            match self.tape[i] {
                Node::Const(_) => {}
                Node::Symbol(k) => grad[k] += g,
                Node::Neg(a) => adj[a] -= g,
                Node::Add(a, b) => {
                    adj[a] += g;
                    adj[b] += g;
                }
                Node::Sub(a, b) => {
                    adj[a] += g;
                    adj[b] -= g;
                }
                Node::Mul(a, b) => {
                    adj[a] += g * v[b];
                    adj[b] += g * v[a];
                }
                Node::Div(a, b) => {
                    adj[a] += g / v[b];
                    adj[b] -= g * v[i] / v[b];
                }
                Node::Pow(a, b) => {
                    // d(a^b) = b·a^(b−1) da + a^b·ln a db; the second term only where b varies
                    // (a constant exponent of a negative base is still differentiable in a).
                    let (base, ex) = (v[a], v[b]);
                    adj[a] += g * ex * base.powf(ex - 1.0);
                    if !matches!(self.tape[b], Node::Const(_)) {
                        adj[b] += g * v[i] * base.ln();
                    }
                }
                Node::Call1(f, a) => {
                    let d = match f {
                        Func::Exp => v[i],
                        Func::Log => 1.0 / v[a],
                        Func::Log10 => 1.0 / (v[a] * std::f64::consts::LN_10),
                        Func::Sqrt => 0.5 / v[i],
                        Func::Abs => v[a].signum(),
                        Func::Sigmoid => v[i] * (1.0 - v[i]),
                        Func::Min | Func::Max => unreachable!("two-argument function"),
                    };
                    adj[a] += g * d;
                }
                Node::Call2(f, a, b) => {
                    let first = match f {
                        Func::Min => v[a] <= v[b],
                        Func::Max => v[a] >= v[b],
                        _ => unreachable!("one-argument function"),
                    };
                    if first {
                        adj[a] += g;
                    } else {
                        adj[b] += g;
                    }
                }
            }
        }
        v[n - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(e: &Expr) -> Bound {
        e.bind(&(0..e.symbols().len()).collect::<Vec<_>>())
    }

    #[test]
    fn precedence_and_associativity() {
        let e = Expr::parse("-a^2 + b*c - d/e^f^g").unwrap();
        assert_eq!(e.symbols(), ["a", "b", "c", "d", "e", "f", "g"]);
        let x = [3.0, 2.0, 5.0, 8.0, 2.0, 3.0, 0.5];
        let want = -9.0 + 10.0 - 8.0 / 2f64.powf(3f64.powf(0.5));
        assert!((identity(&e).value(&x) - want).abs() < 1e-12);
        let e = Expr::parse("2**3 * 1e-1 + 2.5E+1").unwrap();
        assert!((identity(&e).value(&[]) - 25.8).abs() < 1e-12);
    }

    #[test]
    fn reverse_mode_matches_central_differences() {
        let text = "E + A*(n_once + r^phi*n_rec)^(-alpha) + B*exp(-k*D)/sqrt(D) + log(max(D, r))";
        let e = Expr::parse(text).unwrap();
        let b = identity(&e);
        let x = [1.9, 400.0, 1e6, 4.0, 0.46, 3e6, 0.3, 50.0, 0.01, 20.0];
        assert_eq!(e.symbols().len(), x.len());
        let mut g = vec![0.0; x.len()];
        let mut s = Vec::new();
        let v = b.eval_grad(&x, &mut g, &mut s);
        assert!((v - b.value(&x)).abs() < 1e-12);
        for k in 0..x.len() {
            let h = 1e-6 * x[k].abs().max(1e-3);
            let (mut up, mut dn) = (x, x);
            up[k] += h;
            dn[k] -= h;
            let fd = (b.value(&up) - b.value(&dn)) / (2.0 * h);
            assert!(
                (g[k] - fd).abs() <= 1e-6 * fd.abs().max(1e-8),
                "∂/∂{}: {} vs {fd}",
                e.symbols()[k],
                g[k]
            );
        }
    }

    #[test]
    fn errors_name_the_position_and_the_token() {
        let err = Expr::parse("E + A * (N ^ -alpha").unwrap_err();
        assert_eq!(err.pos, 19);
        assert!(err.expected.contains(')'), "{err}");
        let err = Expr::parse("E + * N").unwrap_err();
        assert_eq!((err.pos, err.found.as_str()), (4, "`*`"));
        let err = Expr::parse("E + A $ N").unwrap_err();
        assert_eq!((err.pos, err.found.as_str()), (6, "`$`"));
        let err = Expr::parse("E + sin(N)").unwrap_err();
        assert!(err.expected.contains("known function"), "{err}");
        let err = Expr::parse("E N").unwrap_err();
        assert_eq!((err.pos, err.found.as_str()), (2, "`N`"));
        assert!(
            err.pointing("E N").ends_with("\n    ^"),
            "{}",
            err.pointing("E N")
        );
    }
}

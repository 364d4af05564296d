//! Recursive-descent parser, one function per precedence level (see the grammar in the module
//! above). Recursion is counted, and so are the tree's depth and its nodes, so that no input
//! can exhaust the stack or the evaluator.

use super::lexer::{Spanned, Token, tokenize};
use super::{BinaryOp, DEPTH_MAX, Function, NODES_MAX, Node, NodeKind, ParseError, SOURCE_BYTES_MAX, Scopes, Value};

pub(crate) fn parse(source: &str, scopes: Scopes) -> Result<Node, ParseError> {
    if source.len() > SOURCE_BYTES_MAX {
        return Err(ParseError::at(
            source,
            SOURCE_BYTES_MAX,
            format!("the expression is {} bytes long, at most {SOURCE_BYTES_MAX} are allowed", source.len()),
        ));
    }
    let tokens = tokenize(source)?;
    let mut parser = Parser { source, scopes, tokens, at: 0, nesting: 0, nodes: 0 };
    if parser.peek() == &Token::End {
        return Err(parser.error_here("the expression is empty: write a condition such as other.memory_mb >= 1024"));
    }
    let root = parser.or()?;
    if parser.peek() != &Token::End {
        let found = parser.peek().describe();
        return Err(parser.error_here(&format!("expected an operator or the end, found {found}")));
    }
    Ok(root)
}

struct Parser<'a> {
    source: &'a str,
    scopes: Scopes,
    tokens: Vec<Spanned>,
    at: usize,
    /// Current recursion depth of the parser.
    nesting: usize,
    /// Nodes built so far.
    nodes: usize,
}

/// The node's depth: 1 + its deepest child (kept in a side field of the parser's result).
fn depth(node: &Node) -> usize {
    node.depth
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        &self.tokens[self.at.min(self.tokens.len() - 1)].token
    }

    fn peek_at(&self, ahead: usize) -> &Token {
        &self.tokens[(self.at + ahead).min(self.tokens.len() - 1)].token
    }

    fn start(&self) -> usize {
        self.tokens[self.at.min(self.tokens.len() - 1)].start
    }

    fn advance(&mut self) -> Spanned {
        let token = self.tokens[self.at.min(self.tokens.len() - 1)].clone();
        if self.at < self.tokens.len() - 1 {
            self.at += 1;
        }
        token
    }

    fn previous_end(&self) -> usize {
        if self.at == 0 { 0 } else { self.tokens[self.at - 1].end }
    }

    fn error_here(&self, message: &str) -> ParseError {
        ParseError::at(self.source, self.start(), message.to_string())
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(self.peek(), Token::Ident(name) if name == word)
    }

    fn expect(&mut self, token: Token, what: &str) -> Result<(), ParseError> {
        if *self.peek() == token {
            self.advance();
            Ok(())
        } else {
            let found = self.peek().describe();
            Err(self.error_here(&format!("expected {what}, found {found}")))
        }
    }

    fn node(&mut self, kind: NodeKind, start: usize, children_depth: usize) -> Result<Node, ParseError> {
        self.nodes += 1;
        if self.nodes > NODES_MAX {
            return Err(ParseError::at(
                self.source,
                start,
                format!("the expression has more than {NODES_MAX} parts: split it or simplify it"),
            ));
        }
        let depth = children_depth + 1;
        if depth > DEPTH_MAX {
            return Err(ParseError::at(
                self.source,
                start,
                format!("the expression nests deeper than {DEPTH_MAX} levels: simplify it"),
            ));
        }
        Ok(Node { kind, start, end: self.previous_end(), depth })
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.nesting += 1;
        if self.nesting > DEPTH_MAX {
            return Err(self.error_here(&format!("the expression nests deeper than {DEPTH_MAX} levels: simplify it")));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Node, ParseError> {
        self.enter()?;
        let start = self.start();
        let mut left = self.and()?;
        while self.is_word("or") || *self.peek() == Token::OrOr {
            self.advance();
            let right = self.and()?;
            let children = depth(&left).max(depth(&right));
            left = self.node(NodeKind::Or(Box::new(left), Box::new(right)), start, children)?;
        }
        self.nesting -= 1;
        Ok(left)
    }

    fn and(&mut self) -> Result<Node, ParseError> {
        let start = self.start();
        let mut left = self.not()?;
        while self.is_word("and") || *self.peek() == Token::AndAnd {
            self.advance();
            let right = self.not()?;
            let children = depth(&left).max(depth(&right));
            left = self.node(NodeKind::And(Box::new(left), Box::new(right)), start, children)?;
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Node, ParseError> {
        let start = self.start();
        if (self.is_word("not") && !matches!(self.peek_at(1), Token::Ident(w) if w == "in"))
            || *self.peek() == Token::Bang
        {
            self.advance();
            self.enter()?;
            let operand = self.not()?;
            self.nesting -= 1;
            let children = depth(&operand);
            return self.node(NodeKind::Not(Box::new(operand)), start, children);
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Node, ParseError> {
        let start = self.start();
        let left = self.sum()?;
        let node = if let Some(op) = comparison_op(self.peek()) {
            self.advance();
            let right = self.sum()?;
            let children = depth(&left).max(depth(&right));
            self.node(NodeKind::Binary { op, left: Box::new(left), right: Box::new(right) }, start, children)?
        } else if self.is_word("in") || (self.is_word("not") && matches!(self.peek_at(1), Token::Ident(w) if w == "in"))
        {
            let negated = self.is_word("not");
            self.advance();
            if negated {
                self.advance();
            }
            let list = self.sum()?;
            let children = depth(&left).max(depth(&list));
            self.node(NodeKind::In { item: Box::new(left), list: Box::new(list), negated }, start, children)?
        } else {
            return Ok(left);
        };
        if comparison_op(self.peek()).is_some() || self.is_word("in") {
            return Err(self.error_here("comparisons do not chain: join them with 'and'"));
        }
        Ok(node)
    }

    fn sum(&mut self) -> Result<Node, ParseError> {
        let start = self.start();
        let mut left = self.product()?;
        loop {
            let op = match self.peek() {
                Token::Plus => BinaryOp::Add,
                Token::Minus => BinaryOp::Sub,
                _ => return Ok(left),
            };
            self.advance();
            let right = self.product()?;
            let children = depth(&left).max(depth(&right));
            left = self.node(NodeKind::Binary { op, left: Box::new(left), right: Box::new(right) }, start, children)?;
        }
    }

    fn product(&mut self) -> Result<Node, ParseError> {
        let start = self.start();
        let mut left = self.unary()?;
        loop {
            let op = match self.peek() {
                Token::Star => BinaryOp::Mul,
                Token::Slash => BinaryOp::Div,
                Token::Percent => BinaryOp::Rem,
                _ => return Ok(left),
            };
            self.advance();
            let right = self.unary()?;
            let children = depth(&left).max(depth(&right));
            left = self.node(NodeKind::Binary { op, left: Box::new(left), right: Box::new(right) }, start, children)?;
        }
    }

    fn unary(&mut self) -> Result<Node, ParseError> {
        let start = self.start();
        if *self.peek() == Token::Minus {
            self.advance();
            self.enter()?;
            let operand = self.unary()?;
            self.nesting -= 1;
            let children = depth(&operand);
            return self.node(NodeKind::Negate(Box::new(operand)), start, children);
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Node, ParseError> {
        let start = self.start();
        match self.peek().clone() {
            Token::Number(n) => {
                self.advance();
                self.node(NodeKind::Literal(Value::Number(n)), start, 0)
            }
            Token::Text(text) => {
                self.advance();
                self.node(NodeKind::Literal(Value::Text(text)), start, 0)
            }
            Token::LParen => {
                self.advance();
                let inner = self.or()?;
                self.expect(Token::RParen, "')' to close the '(' opened before")?;
                Ok(Node { end: self.previous_end(), start, ..inner })
            }
            Token::LBracket => self.list(start),
            Token::Ident(name) => self.name(&name, start),
            other => Err(self.error_here(&format!("expected a value, found {}", other.describe()))),
        }
    }

    fn list(&mut self, start: usize) -> Result<Node, ParseError> {
        self.advance();
        let mut items = Vec::new();
        let mut children = 0;
        while *self.peek() != Token::RBracket {
            let item = self.or()?;
            children = children.max(depth(&item));
            items.push(item);
            if *self.peek() == Token::Comma {
                self.advance();
            } else {
                break;
            }
        }
        self.expect(Token::RBracket, "',' or ']' in the list")?;
        self.node(NodeKind::List(items), start, children)
    }

    fn name(&mut self, name: &str, start: usize) -> Result<Node, ParseError> {
        self.advance();
        match name {
            "true" => return self.node(NodeKind::Literal(Value::Bool(true)), start, 0),
            "false" => return self.node(NodeKind::Literal(Value::Bool(false)), start, 0),
            "undefined" => return self.node(NodeKind::Literal(Value::Undefined), start, 0),
            _ => {}
        }
        if let Some((scope, side)) = self.scopes.iter().find(|(word, _)| *word == name).copied() {
            self.expect(Token::Dot, &format!("'.' and an attribute name after '{name}'"))?;
            let Token::Ident(attribute) = self.peek().clone() else {
                return Err(self.error_here(&format!("expected an attribute name after '{name}.'")));
            };
            self.advance();
            return self.node(NodeKind::Reference { side, scope, name: attribute }, start, 0);
        }
        if *self.peek() == Token::LParen {
            return self.call(name, start);
        }
        let message = match name {
            "and" | "or" | "not" | "in" => format!("expected a value before or after '{name}'"),
            _ => {
                let written: Vec<String> = self.scopes.iter().map(|(word, _)| format!("{word}.{name}")).collect();
                format!("unknown name '{name}': attributes are written {}", written.join(" or "))
            }
        };
        Err(ParseError::at(self.source, start, message))
    }

    fn call(&mut self, name: &str, start: usize) -> Result<Node, ParseError> {
        let Some((function, arity)) = Function::from_name(name) else {
            return Err(ParseError::at(
                self.source,
                start,
                format!(
                    "unknown function '{name}': known are starts_with, ends_with, contains, glob, lower, len, min, max, abs, is_defined, if_defined"
                ),
            ));
        };
        self.advance();
        let mut arguments = Vec::new();
        let mut children = 0;
        while *self.peek() != Token::RParen {
            let argument = self.or()?;
            children = children.max(depth(&argument));
            arguments.push(argument);
            if *self.peek() == Token::Comma {
                self.advance();
            } else {
                break;
            }
        }
        self.expect(Token::RParen, "',' or ')' after the arguments")?;
        if arguments.len() != arity {
            return Err(ParseError::at(
                self.source,
                start,
                format!("{name} takes {arity} argument{}, not {}", if arity == 1 { "" } else { "s" }, arguments.len()),
            ));
        }
        self.node(NodeKind::Call { function, arguments }, start, children)
    }
}

fn comparison_op(token: &Token) -> Option<BinaryOp> {
    Some(match token {
        Token::Eq => BinaryOp::Eq,
        Token::Ne => BinaryOp::Ne,
        Token::Lt => BinaryOp::Lt,
        Token::Le => BinaryOp::Le,
        Token::Gt => BinaryOp::Gt,
        Token::Ge => BinaryOp::Ge,
        _ => return None,
    })
}

// A safe subset of Markdown for the page's assistant text, built as DOM nodes.
//
// Model text is never parsed as HTML: every piece of it lands in a text node, inside
// elements this file creates by fixed tag names (p, h1-h6, strong, em, del, code, pre,
// ul, ol, li, blockquote, hr, a). The only attributes set are a link's href (http and
// https URLs only; anything else stays text), its target and rel, and a list's start.
"use strict";

const MD_FENCE = /^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)/;
const MD_HEADING = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const MD_RULE = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;
const MD_ITEM = /^(\s*)(?:([-*+])|(\d{1,9})[.)])\s+(.*)$/;
const MD_QUOTE = /^ {0,3}>\s?(.*)$/;
// Inline: code spans, [text](url), bold, italic, strikethrough and bare http(s) URLs.
const MD_INLINE = new RegExp([
  /(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)/.source,
  /\[([^\]\n]+)\]\(\s*([^()\s]+)\s*\)/.source,
  /\*\*(?=\S)([\s\S]*?\S)\*\*/.source,
  /__(?=\S)([\s\S]*?\S)__(?![A-Za-z0-9])/.source,
  /\*(?=[^\s*])([\s\S]*?[^\s*])\*/.source,
  /(?<![A-Za-z0-9_])_(?=[^\s_])([\s\S]*?[^\s_])_(?![A-Za-z0-9_])/.source,
  /~~(?=\S)([\s\S]*?\S)~~/.source,
  /(https?:\/\/[^\s<>]*[^\s<>.,;:!?'")\]])/.source,
].join("|"), "g");

// The URL as a link may hold it, or null: only absolute http(s) URLs.
function safeHref(raw) {
  try {
    const url = new URL(raw);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch (error) {
    return null;
  }
}

function mdLink(href, children) {
  const link = document.createElement("a");
  link.href = href;
  link.target = "_blank";
  link.rel = "noopener noreferrer";
  link.append(...children);
  return link;
}

function mdWrap(tag, children) {
  const node = document.createElement(tag);
  node.append(...children);
  return node;
}

// Inline markdown of `text` as a list of nodes.
function mdInline(text) {
  const nodes = [];
  let at = 0;
  MD_INLINE.lastIndex = 0;
  for (const match of text.matchAll(MD_INLINE)) {
    if (match.index > at) nodes.push(document.createTextNode(text.slice(at, match.index)));
    at = match.index + match[0].length;
    const [whole, , code, label, url, bold, boldU, italic, italicU, struck, bare] = match;
    if (code !== undefined) {
      const trimmed = /^ .* $/.test(code) && code.trim() ? code.slice(1, -1) : code;
      nodes.push(mdWrap("code", [trimmed]));
    } else if (label !== undefined) {
      const href = safeHref(url);
      nodes.push(href ? mdLink(href, mdInline(label)) : document.createTextNode(whole));
    } else if (bold !== undefined || boldU !== undefined) {
      nodes.push(mdWrap("strong", mdInline(bold ?? boldU)));
    } else if (italic !== undefined || italicU !== undefined) {
      nodes.push(mdWrap("em", mdInline(italic ?? italicU)));
    } else if (struck !== undefined) {
      nodes.push(mdWrap("del", mdInline(struck)));
    } else {
      // A URL's own closing parenthesis (Wikipedia's `Foo_(bar)`) is the URL's.
      let url = bare;
      if (text[at] === ")" && url.split("(").length > url.split(")").length) { url += ")"; at++; }
      const href = safeHref(url);
      nodes.push(href ? mdLink(href, [url]) : document.createTextNode(url));
    }
  }
  if (at < text.length) nodes.push(document.createTextNode(text.slice(at)));
  return nodes;
}

// Block markdown of `text` as a fragment. Unfinished constructs (an open code fence,
// while an answer streams) render as far as they go.
function mdBlocks(text) {
  const out = document.createDocumentFragment();
  const lines = text.replace(/\r\n?/g, "\n").split("\n");
  let paragraph = [];
  let lists = [];  // open lists, innermost last: {indent, node, item}
  const closeParagraph = () => {
    if (paragraph.length) out.appendChild(mdWrap("p", mdInline(paragraph.join("\n"))));
    paragraph = [];
  };
  const closeLists = () => { lists = []; };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const fence = MD_FENCE.exec(line);
    if (fence) {
      closeParagraph(); closeLists();
      const body = [];
      for (i++; i < lines.length; i++) {
        const closing = lines[i].trim();
        if (closing.startsWith(fence[1]) && /^(`+|~+)$/.test(closing)) break;
        body.push(lines[i]);
      }
      const code = mdWrap("code", [body.join("\n")]);
      if (fence[2]) code.dataset.language = fence[2];
      out.appendChild(mdWrap("pre", [code]));
      continue;
    }
    if (!line.trim()) { closeParagraph(); closeLists(); continue; }
    if (MD_RULE.test(line) && !paragraph.length) {
      closeLists();
      out.appendChild(document.createElement("hr"));
      continue;
    }
    const item = MD_ITEM.exec(line);
    if (item && (lists.length || !paragraph.length || item[2] || item[3] === "1")) {
      closeParagraph();
      const indent = item[1].replace(/\t/g, "    ").length;
      const tag = item[2] ? "ul" : "ol";
      while (lists.length && (indent < lists[lists.length - 1].indent ||
             (indent === lists[lists.length - 1].indent && lists[lists.length - 1].node.tagName !== tag.toUpperCase()))) {
        lists.pop();
      }
      let list = lists[lists.length - 1];
      if (!list || indent > list.indent) {
        const node = document.createElement(tag);
        if (tag === "ol" && item[3] !== "1") node.start = Number(item[3]);
        (list ? list.item : out).appendChild(node);
        list = { indent, node, item: null };
        lists.push(list);
      }
      list.item = mdWrap("li", mdInline(item[4]));
      list.node.appendChild(list.item);
      continue;
    }
    if (lists.length && /^\s/.test(line)) {  // an item's continuation line
      lists[lists.length - 1].item.append("\n", ...mdInline(line.trim()));
      continue;
    }
    closeLists();
    const heading = MD_HEADING.exec(line);
    if (heading) {
      closeParagraph();
      out.appendChild(mdWrap(`h${heading[1].length}`, mdInline(heading[2])));
    } else if (MD_QUOTE.test(line)) {
      closeParagraph();
      const quoted = [];
      for (; i < lines.length && MD_QUOTE.test(lines[i]); i++) quoted.push(MD_QUOTE.exec(lines[i])[1]);
      i--;
      out.appendChild(mdWrap("blockquote", [mdBlocks(quoted.join("\n"))]));
    } else {
      paragraph.push(line.trim());
    }
  }
  closeParagraph();
  return out;
}

// Replaces what `container` shows with `text` rendered: one DOM change, so an answer
// re-rendered as it streams never shows a half-built state.
function renderMarkdown(container, text) {
  container.replaceChildren(mdBlocks(text));
}

// Gorgon's page: sends a prompt over the WebSocket stream, shows the answer as it grows, draws each
// step's candidate tree to the right of the last (accepted nodes flash green, rejected ones turn red and
// fade), and keeps a tokens/s meter with the speedup over plain decoding measured at server start.

const $ = (sel) => document.querySelector(sel);
const SVG = "http://www.w3.org/2000/svg";
const DX = 78; // px per depth column
const DY = 26; // px per row
const ROWS = 6; // rows drawn above and below the accepted path
const KEEP_STEPS = 300; // older steps are removed from the DOM

let plainSpeed = null;

async function init() {
  const info = await (await fetch("/info")).json();
  $("#model").textContent = `${info.model}`;
  for (const m of info.methods) {
    const opt = new Option(m, m, m === info.default_method, m === info.default_method);
    $("#method").append(opt);
  }
  plainSpeed = info.plain_tokens_per_s;
  if (plainSpeed) $("#plain").textContent = `(plain: ${plainSpeed.toFixed(1)} tok/s)`;
  $("#form").addEventListener("submit", (e) => {
    e.preventDefault();
    generate();
  });
}

// ---------------------------------------------------------------------------------------- tree

class TreeView {
  constructor(svg) {
    this.svg = svg;
    this.clear();
  }

  clear() {
    this.svg.replaceChildren();
    this.cursor = 0; // column of the last committed token drawn
    this.steps = [];
    this.resize(4);
  }

  resize(columns) {
    this.svg.setAttribute("width", String((columns + 2) * DX));
    this.svg.setAttribute("height", String((2 * ROWS + 1) * DY + 8));
  }

  // Rows: leaves in visiting order (accepted child first) take rows 0, 1, -1, 2, -2, ...; a node sits
  // on its first child's row, so the accepted path stays on row 0 and rejected branches fan out.
  layout(nodes) {
    const kids = new Map();
    for (const n of nodes) if (n.parent >= 0) (kids.get(n.parent) ?? kids.set(n.parent, []).get(n.parent)).push(n);
    for (const list of kids.values()) list.sort((a, b) => Number(b.accepted) - Number(a.accepted));
    const row = new Map();
    let leaf = 0;
    const visit = (n) => {
      const children = kids.get(n.id) ?? [];
      if (!children.length) {
        const k = leaf++;
        row.set(n.id, k === 0 ? 0 : (k % 2 ? 1 : -1) * Math.ceil(k / 2));
        return;
      }
      children.forEach(visit);
      row.set(n.id, row.get(children[0].id));
    };
    nodes.filter((n) => n.parent < 0).forEach(visit);
    return row;
  }

  add(step) {
    const chain = step.kind === "chain";
    const base = chain ? this.cursor + 1 : this.cursor; // a tree's root is the token already drawn
    const rows = this.layout(chain ? step.nodes.map((n) => ({ ...n, parent: -1 })) : step.nodes);
    if (chain) step.nodes.forEach((n) => rows.set(n.id, 0));
    const pos = new Map(step.nodes.map((n) => [n.id, { x: (base + n.depth) * DX + DX / 2, y: this.y(rows.get(n.id)) }]));
    const g = document.createElementNS(SVG, "g");
    g.setAttribute("class", "step");
    for (const n of step.nodes) {
      const parent = chain ? step.nodes.find((m) => m.id === n.id - 1) : step.nodes.find((m) => m.id === n.parent);
      if (!parent) continue;
      const a = pos.get(parent.id), b = pos.get(n.id);
      const edge = document.createElementNS(SVG, "path");
      edge.setAttribute("d", `M${a.x + 30},${a.y} C${a.x + 45},${a.y} ${b.x - 45},${b.y} ${b.x - 30},${b.y}`);
      edge.setAttribute("class", `edge ${n.accepted ? "accepted" : "rejected"}`);
      g.append(edge);
    }
    for (const n of step.nodes) {
      if (!chain && n.depth === 0 && this.steps.length) continue; // drawn last step, as its bonus token
      g.append(this.node(n, pos.get(n.id)));
    }
    this.svg.append(g);
    this.steps.push(g);
    if (this.steps.length > KEEP_STEPS) this.steps.shift().remove();
    const deepest = Math.max(...step.nodes.map((n) => n.depth));
    const last = step.nodes.filter((n) => n.accepted).reduce((a, b) => (b.depth > a.depth ? b : a));
    this.cursor = base + last.depth;
    this.resize(base + deepest + 1);
    const box = this.svg.parentElement;
    box.scrollLeft = box.scrollWidth;
  }

  y(row) {
    const clamped = Math.max(-ROWS, Math.min(ROWS, row ?? 0));
    return (clamped + ROWS) * DY + DY / 2 + 4;
  }

  node(n, p) {
    const g = document.createElementNS(SVG, "g");
    g.setAttribute("class", `node ${n.accepted ? "accepted" : "rejected"}${n.bonus ? " bonus" : ""}`);
    g.setAttribute("transform", `translate(${p.x},${p.y})`);
    const rect = document.createElementNS(SVG, "rect");
    rect.setAttribute("x", "-30");
    rect.setAttribute("y", "-10");
    rect.setAttribute("width", "60");
    rect.setAttribute("height", "20");
    const text = document.createElementNS(SVG, "text");
    text.textContent = shown(n.token);
    const title = document.createElementNS(SVG, "title");
    title.textContent = `${JSON.stringify(n.token)} (depth ${n.depth}, ${n.accepted ? "accepted" : "rejected"})`;
    g.append(rect, text, title);
    return g;
  }
}

function shown(token) {
  const visible = token.replaceAll("\n", "↵").replaceAll(" ", "·") || "∅";
  return visible.length > 8 ? `${visible.slice(0, 7)}…` : visible;
}

// ------------------------------------------------------------------------------------ streaming

const tree = new TreeView($("#tree"));

function setMeter(tokensPerS, speedup) {
  $("#tps").textContent = tokensPerS.toFixed(1);
  const scale = Math.max(3 * (plainSpeed || tokensPerS || 1), tokensPerS);
  $("#tps-bar").style.width = `${(100 * tokensPerS) / scale}%`;
  if (plainSpeed) $("#plain-mark").style.left = `${(100 * plainSpeed) / scale}%`;
  $("#speedup").textContent = speedup ? `${speedup.toFixed(2)}×` : "–";
}

function generate() {
  const answer = $("#answer");
  answer.textContent = "";
  answer.classList.remove("error");
  delete answer.dataset.done;
  $("#stats").textContent = "";
  tree.clear();
  setMeter(0, null);
  $("#go").disabled = true;
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/v1/generate_stream`);
  ws.onopen = () =>
    ws.send(
      JSON.stringify({
        messages: [{ role: "user", content: $("#prompt").value }],
        method: $("#method").value,
        max_tokens: Number($("#max-tokens").value),
        temperature: Number($("#temperature").value),
      }),
    );
  ws.onmessage = (message) => {
    const msg = JSON.parse(message.data);
    if (msg.type === "step") {
      answer.textContent += msg.text;
      tree.add(msg.tree_debug);
      setMeter(msg.tree_debug.tokens_per_s, msg.tree_debug.speedup);
    } else if (msg.type === "done") {
      const s = msg.speculative;
      const rates = s.acceptance_rate_per_position.map((r) => r.toFixed(2)).join(" ");
      $("#stats").textContent =
        `${s.method}: ${msg.usage.completion_tokens} tokens in ${s.steps} steps, ` +
        `τ ${s.tau.toFixed(2)} tokens/step${rates ? `, acceptance per position ${rates}` : ""}, finish: ${msg.finish_reason}`;
      answer.dataset.done = "true";
    } else if (msg.type === "error") {
      answer.classList.add("error");
      answer.textContent = msg.error.message;
    }
  };
  ws.onclose = () => {
    $("#go").disabled = false;
  };
}

init();

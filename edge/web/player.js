// The player page: join by quiz ID and nickname, answer on the server's clock, follow one's standing.
import {
  $,
  CHOICE_SHAPES,
  Connection,
  KIND_LABELS,
  countdown,
  creditText,
  fill,
  formatNumber,
  h,
  mediaUrl,
  plainNumber,
  renderLeaderboard,
  renderMedia,
  renderPodium,
  renderResults,
  showView,
  statusBanner,
  takeIdentityToken,
} from "./common.js";

const TOKEN_KEY = "quizmesh.player_token";
const IDENTITY_KEY = "quizmesh.identity_token";
// A resume that fails with one of these will never succeed: the stored credential is forgotten.
const FINAL_RESUME_ERRORS = new Set([
  "unauthenticated",
  "not_a_participant",
  "quiz_not_found",
  "player_not_found",
  "invalid_field",
]);

const game = {
  player: null, // {player_id, nickname, score}
  state: null, // the latest quiz state
  results: null, // the latest question results: {question_index, correct_choices, choice_counts}
  answers: new Map(), // question_index → {answer?, result?} of this player; answer is what was sent
  drafts: new Map(), // question_index → the answer being composed (choices picked, text, order, number)
  shown: null, // which question, in which answer state, the answer area was last built for
  notes: new Map(), // question_index → why the last answer sent was refused as not fitting the question
  board: null, // the latest leaderboard_updated
  total: 0,
};

// A signed-in learner's identity token, handed over by the host application (`/#identity_token=…`).
const identityToken = takeIdentityToken(IDENTITY_KEY);

const connection = new Connection({
  onOpen: resumeIfJoined,
  onPush: handlePush,
  onStatus: statusBanner($("#connection")),
});

async function resumeIfJoined() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return;
  try {
    const reply = await connection.request("resume", { player_token: token });
    sessionStorage.setItem(TOKEN_KEY, reply.player_token);
    seat(reply.player, reply.state);
    if (reply.current_answer) {
      const index = reply.state.question_index;
      const answer = reply.current_answer.answer ?? undefined;
      game.answers.set(index, { ...game.answers.get(index), answer, result: reply.current_answer });
      game.total = Math.max(game.total, reply.current_answer.total_score);
    } else if (reply.answered_current_question) {
      game.answers.set(reply.state.question_index, { ...game.answers.get(reply.state.question_index) });
    }
    render();
  } catch (error) {
    if (FINAL_RESUME_ERRORS.has(error.code)) {
      sessionStorage.removeItem(TOKEN_KEY);
      showJoin("Your previous session has ended; join again.");
    }
  }
}

function seat(player, state) {
  if (game.player?.player_id !== player.player_id) {
    game.answers.clear();
    game.board = null;
    game.results = null;
    game.total = 0;
  }
  game.player = player;
  game.total = Math.max(game.total, player.score);
  adoptState(state);
}

function adoptState(state) {
  if (game.state && state.quiz_id === game.state.quiz_id && state.server_time_ms < game.state.server_time_ms) return;
  game.state = state;
}

function handlePush(message) {
  switch (message.type) {
    case "quiz_state":
      adoptState(message.state);
      if (message.results) game.results = message.results;
      break;
    case "leaderboard_updated":
      if (game.board && message.version <= game.board.version) return;
      game.board = message;
      if (message.me) game.total = Math.max(game.total, message.me.score);
      break;
    case "participants":
      // The leaderboard is hidden, but the count of players still changes.
      game.participants = message.player_count;
      break;
    case "kicked":
      sessionStorage.removeItem(TOKEN_KEY);
      game.player = null;
      showView("kicked");
      $("#standing").hidden = true;
      $("#top").hidden = true;
      return;
    default:
      return;
  }
  render();
}

// --- joining ---

function showJoin(message = "") {
  game.player = null;
  game.state = null;
  $("#standing").hidden = true;
  $("#top").hidden = true;
  $("#join-error").textContent = message;
  fill($("#quiz-title"));
  fill($("#me-nickname"));
  showView("join");
}

/** The signed-in learner's past sessions, newest first (GET /api/v1/users/me/results). */
async function showHistory() {
  let body;
  try {
    const response = await fetch("/api/v1/users/me/results?page_size=10", {
      headers: { Authorization: `Bearer ${identityToken}` },
      cache: "no-store",
    });
    if (!response.ok) return;
    body = await response.json();
  } catch {
    return; // the history is a courtesy: joining works without it
  }
  const rows = body.results.map((r) =>
    h(
      "li",
      { class: "history-row", dataset: { session: r.session_id } },
      h("span", { class: "history-when", text: new Date(r.join_time).toLocaleDateString() }),
      h("span", { class: "history-session", text: r.session_id }),
      h("span", { class: "history-rank", text: r.rank ? `#${r.rank} of ${r.player_count}` : "left" }),
      h("span", { class: "history-score", text: `${formatNumber(r.score)} points` }),
    ),
  );
  fill($("#history-list"), rows);
  $("#history-empty").hidden = rows.length > 0;
  $("#history").hidden = false;
}

$("#join-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const quizId = $("#join-quiz-id").value.trim();
  const nickname = $("#join-nickname").value.trim();
  const button = $("#join-button");
  button.disabled = true;
  $("#join-error").textContent = "";
  try {
    const fields = { quiz_id: quizId, nickname };
    if (identityToken) fields.identity_token = identityToken;
    const reply = await connection.request("join_quiz", fields);
    sessionStorage.setItem(TOKEN_KEY, reply.player_token);
    seat(reply.player, reply.state);
    render();
  } catch (error) {
    $("#join-error").textContent =
      error.code === "disconnected" ? "Not connected yet — try again in a moment." : error.message;
  } finally {
    button.disabled = false;
  }
});

$("#rejoin-button").addEventListener("click", () => showJoin());

// --- answering ---

/** Sends an answer: `fields` is the member its kind takes ({choice}, {choices}, {truth}, {text}, {order},
 * {number}; docs/protocol.md). */
async function answer(questionIndex, fields) {
  const mine = game.answers.get(questionIndex);
  if (mine) return;
  game.answers.set(questionIndex, { answer: fields });
  render();
  // An answer refused as retryable was not recorded (or is still being recorded); sending the same one
  // again is safe. The edge keeps its first receipt time, so retrying through a restart of the services
  // behind it costs no points: keep trying for up to about half a minute.
  for (let attempt = 0; attempt < 12; attempt += 1) {
    try {
      const result = await connection.request("submit_answer", { question_index: questionIndex, ...fields });
      game.answers.set(questionIndex, { answer: fields, result });
      game.total = Math.max(game.total, result.total_score);
      render();
      return;
    } catch (error) {
      if (error.code === "already_answered") return;
      if (!error.retryable && error.code !== "disconnected") {
        // A refusal of the answer's shape (a number outside the range) lets the player correct it.
        if (error.code === "invalid_answer") {
          game.answers.delete(questionIndex);
          game.notes.set(questionIndex, error.message);
        } else {
          game.answers.set(questionIndex, { answer: fields, refused: error.code, message: error.message });
        }
        render();
        render();
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(250 * 2 ** attempt, 4000)));
    }
  }
}

// --- rendering ---

let timer = null;

function render() {
  const { state, player } = game;
  if (!player || !state) return;
  $("#quiz-title").textContent = state.title;
  $("#me-nickname").textContent = player.nickname;
  clearInterval(timer);
  timer = null;
  switch (state.phase) {
    case "lobby":
      // Joins push no quiz state; the leaderboard, which lists every player, carries the live count.
      $("#lobby-count").textContent = playersText(
        game.board?.player_count ?? game.participants ?? state.participant_count,
      );
      showView("lobby");
      break;
    case "question_open":
      renderQuestion(state);
      showView("question");
      break;
    case "question_closed":
      renderClosed(state);
      showView("results");
      break;
    case "ended":
      renderEnded();
      showView("ended");
      break;
    default:
      break;
  }
  renderStanding(state);
  renderTop(state);
}

function playersText(count) {
  return count === 1 ? "1 player has joined" : `${count} players have joined`;
}

function renderQuestion(state) {
  const question = state.question;
  const kind = question.kind || "single_choice";
  $("#question-number").textContent = `Question ${question.index + 1} of ${state.question_count}`;
  $("#question-kind").textContent = KIND_LABELS[kind] || "";
  $("#question-points").textContent = { double: "Double points", none: "No points" }[question.points] || "";
  $("#question-points").hidden = question.points === "standard" || kind === "poll";
  $("#question-text").textContent = question.text;
  const mine = game.answers.get(question.index);
  // Built again only when the question or its answer state changes: a leaderboard push must not wipe
  // what the player is typing or arranging.
  const shown = `${state.quiz_id}:${question.index}:${Boolean(mine)}`;
  if (game.shown !== shown) {
    game.shown = shown;
    renderMedia($("#question-media"), question);
    buildAnswerArea(question, mine);
  }
  const tick = () => {
    const left = countdown(question, connection.clock);
    $("#countdown").textContent = String(left.seconds);
    $("#timer-bar").style.setProperty("--left", String(left.fraction));
    const closed = left.leftMs <= 0;
    for (const control of document.querySelectorAll("#choices button, #answer-area button, #answer-area input")) {
      control.disabled = Boolean(mine) || closed;
    }
    $("#answer-status").textContent = answerStatus(mine, closed, game.notes.get(question.index));
  };
  tick();
  timer = setInterval(tick, 200);
}

function choiceButton(question, i, text, { pressed, onclick }) {
  const image = question.choice_images?.[i];
  return h(
    "button",
    {
      type: "button",
      class: `choice choice-${i}${pressed ? " chosen" : ""}`,
      "aria-pressed": pressed ? "true" : "false",
      onclick,
    },
    h("span", { class: "shape", text: CHOICE_SHAPES[i], "aria-hidden": "true" }),
    image ? h("img", { class: "choice-image", src: mediaUrl(image), alt: "" }) : null,
    h("span", { class: "text", text }),
  );
}

/** The controls a question's kind answers with; `mine` is this player's answer, once sent. */
function buildAnswerArea(question, mine) {
  const index = question.index;
  const kind = question.kind || "single_choice";
  const sent = mine?.answer || {};
  const submit = (text, fields) =>
    h("button", { type: "button", id: "submit-answer", class: "primary", text, onclick: () => answer(index, fields()) });
  let choices = [];
  let area = [];
  if (kind === "single_choice" || kind === "poll") {
    choices = question.choices.map((text, i) =>
      choiceButton(question, i, text, { pressed: sent.choice === i, onclick: () => answer(index, { choice: i }) }),
    );
  } else if (kind === "true_false") {
    choices = question.choices.map((text, i) =>
      choiceButton(question, i, text, {
        pressed: sent.truth === (i === 0),
        onclick: () => answer(index, { truth: i === 0 }),
      }),
    );
  } else if (kind === "multiple_select") {
    const picked = game.drafts.get(index) || new Set(sent.choices || []);
    game.drafts.set(index, picked);
    choices = question.choices.map((text, i) => {
      const button = choiceButton(question, i, text, {
        pressed: picked.has(i),
        onclick: () => {
          if (picked.has(i)) picked.delete(i);
          else picked.add(i);
          button.classList.toggle("chosen", picked.has(i));
          button.setAttribute("aria-pressed", picked.has(i) ? "true" : "false");
        },
      });
      return button;
    });
    area = [submit("Submit my choices", () => ({ choices: [...picked].sort((a, b) => a - b) }))];
  } else if (kind === "type_answer") {
    const input = h("input", {
      id: "answer-text",
      type: "text",
      maxlength: 200,
      autocomplete: "off",
      spellcheck: "false",
      "aria-label": "Your answer",
      value: sent.text ?? game.drafts.get(index) ?? "",
      oninput: (event) => game.drafts.set(index, event.target.value),
    });
    const form = h(
      "form",
      {
        class: "typed",
        onsubmit: (event) => {
          event.preventDefault();
          answer(index, { text: input.value });
        },
      },
      input,
      h("button", { type: "submit", id: "submit-answer", class: "primary", text: "Submit" }),
    );
    area = [form];
  } else if (kind === "ordering") {
    const order = game.drafts.get(index) || sent.order || question.items.map((_, p) => p);
    game.drafts.set(index, order);
    const list = h("ol", { id: "order-list", class: "order" });
    const draw = () =>
      fill(
        list,
        order.map((position, at) =>
          h(
            "li",
            { class: `choice-${position % 6}` },
            h("span", { class: "text", text: question.items[position] }),
            h("button", {
              type: "button",
              class: "icon move-up",
              text: "▲",
              "aria-label": `Move ${question.items[position]} up`,
              disabled: at === 0 || Boolean(mine),
              onclick: () => {
                [order[at - 1], order[at]] = [order[at], order[at - 1]];
                draw();
              },
            }),
            h("button", {
              type: "button",
              class: "icon move-down",
              text: "▼",
              "aria-label": `Move ${question.items[position]} down`,
              disabled: at === order.length - 1 || Boolean(mine),
              onclick: () => {
                [order[at], order[at + 1]] = [order[at + 1], order[at]];
                draw();
              },
            }),
          ),
        ),
      );
    draw();
    area = [list, submit("Submit this order", () => ({ order: [...order] }))];
  } else if (kind === "estimate") {
    const range = question.estimate || {};
    const input = h("input", {
      id: "answer-number",
      type: "number",
      min: range.min,
      max: range.max,
      step: "any",
      inputmode: "decimal",
      "aria-label": `A number from ${range.min} to ${range.max}`,
      value: sent.number ?? game.drafts.get(index) ?? "",
      oninput: (event) => game.drafts.set(index, event.target.value),
    });
    area = [
      h("p", { class: "muted", text: `A number from ${plainNumber(range.min)} to ${plainNumber(range.max)}` }),
      h(
        "form",
        {
          class: "typed",
          onsubmit: (event) => {
            event.preventDefault();
            if (input.value.trim()) answer(index, { number: input.value.trim() });
          },
        },
        input,
        h("button", { type: "submit", id: "submit-answer", class: "primary", text: "Submit" }),
      ),
    ];
  }
  fill($("#choices"), choices);
  $("#choices").hidden = choices.length === 0;
  fill($("#answer-area"), area);
}

function answerStatus(mine, closed, note) {
  if (mine?.refused === "question_closed") return "Too late — the question had closed.";
  if (mine?.refused) return mine.message;
  if (mine) return "Answer locked in — waiting for the others…";
  if (closed) return "Time's up!";
  return note ?? "";
}

function renderClosed(state) {
  const question = state.question;
  const kind = question.kind || "single_choice";
  const results = game.results?.question_index === question.index ? game.results : null;
  const mine = game.answers.get(question.index);
  const verdict = $("#result-verdict");
  const result = mine?.result;
  if (!result) {
    verdict.textContent = kind === "poll" ? "No vote this time" : "No answer this time";
    verdict.className = "verdict none";
  } else if (kind === "poll") {
    verdict.textContent = "Thanks for voting";
    verdict.className = "verdict none";
  } else if (result.correct) {
    verdict.textContent = "Correct!";
    verdict.className = "verdict correct";
  } else if (result.credit && result.credit !== "0") {
    verdict.textContent = `Partly right: ${creditText(result.credit)}`;
    verdict.className = "verdict partial";
  } else {
    verdict.textContent = "Wrong answer";
    verdict.className = "verdict wrong";
  }
  let detail = "";
  if (kind === "type_answer" && mine?.answer?.text !== undefined) {
    detail = result?.accepted_answer
      ? `You typed “${mine.answer.text}”, accepted as “${result.accepted_answer}”.`
      : `You typed “${mine.answer.text}”.`;
  } else if (kind === "estimate" && results?.question?.estimate) {
    detail = `The answer: ${plainNumber(results.question.estimate.answer)}`;
  }
  $("#result-detail").textContent = detail;
  $("#result-detail").hidden = !detail;
  $("#results-question").textContent = question.text;
  if (results) renderResults($("#results-counts"), question, results);
  else fill($("#results-counts"));
}

function renderEnded() {
  // A board the host hid may be stale: the podium comes only from a visible one.
  const board = game.state.leaderboard_visible ? game.board : null;
  if (board) renderPodium($("#podium"), board.top.slice(0, 3));
  else fill($("#podium"), h("p", { class: "muted", text: "The host shows the final standings." }));
  const rank = board?.me?.rank;
  $("#final-standing").textContent = rank
    ? `You finished #${rank} of ${board.player_count} with ${formatNumber(game.total)} points`
    : `You finished with ${formatNumber(game.total)} points`;
}

function renderStanding(state) {
  // At the end the podium and the final line say it all.
  $("#standing").hidden = state.phase === "ended";
  const index = state.question?.index;
  const mine = index === undefined ? undefined : game.answers.get(index);
  let points = "—";
  if (mine?.result) points = `+${formatNumber(mine.result.points)}`;
  else if (index !== undefined && state.phase !== "question_open") points = "+0";
  $("#my-points").textContent = points;
  $("#my-total").textContent = formatNumber(game.total);
  const board = state.leaderboard_visible ? game.board : null;
  $("#my-rank").textContent = board?.me ? `${board.me.rank} / ${board.player_count}` : "—";
  const ahead = board?.ahead;
  let aheadText = "";
  if (ahead && board.me) {
    const gap = ahead.score - board.me.score;
    aheadText = gap > 0 ? `${formatNumber(gap)} points behind ${ahead.nickname}` : `Tied with ${ahead.nickname}`;
  }
  $("#my-ahead").textContent = aheadText;
}

function renderTop(state) {
  const visible = state.leaderboard_visible;
  $("#top").hidden = !game.board && visible;
  $("#top-hidden").hidden = visible;
  $("#top-list").hidden = !visible;
  if (visible && game.board) renderLeaderboard($("#top-list"), game.board.top, { me: game.player?.player_id });
}

// --- start ---

const params = new URLSearchParams(location.search);
if (params.get("quiz")) $("#join-quiz-id").value = params.get("quiz");
if (sessionStorage.getItem(TOKEN_KEY)) showView("resuming");
else showJoin();
if (identityToken) showHistory();
connection.start();

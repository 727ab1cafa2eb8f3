// The player page: join by quiz ID and nickname, answer on the server's clock, follow one's standing.
import {
  $,
  CHOICE_SHAPES,
  Connection,
  countdown,
  fill,
  formatNumber,
  h,
  renderChoiceCounts,
  renderLeaderboard,
  renderPodium,
  showView,
  statusBanner,
} from "./common.js";

const TOKEN_KEY = "quizmesh.player_token";
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
  answers: new Map(), // question_index → {choice?, result?} of this player
  board: null, // the latest leaderboard_updated
  total: 0,
};

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
      game.answers.set(index, { ...game.answers.get(index), result: reply.current_answer });
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

$("#join-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const quizId = $("#join-quiz-id").value.trim();
  const nickname = $("#join-nickname").value.trim();
  const button = $("#join-button");
  button.disabled = true;
  $("#join-error").textContent = "";
  try {
    const reply = await connection.request("join_quiz", { quiz_id: quizId, nickname });
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

async function answer(questionIndex, choice) {
  const mine = game.answers.get(questionIndex);
  if (mine) return;
  game.answers.set(questionIndex, { choice });
  render();
  // An answer refused as retryable was not recorded (or is still being recorded); sending the same one
  // again is safe. The edge keeps its first receipt time, so retrying through a restart of the services
  // behind it costs no points: keep trying for up to about half a minute.
  for (let attempt = 0; attempt < 12; attempt += 1) {
    try {
      const result = await connection.request("submit_answer", { question_index: questionIndex, choice });
      game.answers.set(questionIndex, { choice, result });
      game.total = Math.max(game.total, result.total_score);
      render();
      return;
    } catch (error) {
      if (error.code === "already_answered") return;
      if (!error.retryable && error.code !== "disconnected") {
        game.answers.set(questionIndex, { choice, refused: error.code, message: error.message });
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
      renderResults(state);
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
  $("#question-number").textContent = `Question ${question.index + 1} of ${state.question_count}`;
  $("#question-points").textContent = { double: "Double points", none: "No points" }[question.points] || "";
  $("#question-points").hidden = question.points === "standard";
  $("#question-text").textContent = question.text;
  const mine = game.answers.get(question.index);
  const buttons = question.choices.map((text, i) =>
    h(
      "button",
      {
        type: "button",
        class: `choice choice-${i}${mine?.choice === i ? " chosen" : ""}`,
        "aria-pressed": mine?.choice === i ? "true" : "false",
        onclick: () => answer(question.index, i),
      },
      h("span", { class: "shape", text: CHOICE_SHAPES[i], "aria-hidden": "true" }),
      h("span", { class: "text", text }),
    ),
  );
  fill($("#choices"), buttons);
  const tick = () => {
    const left = countdown(question, connection.clock);
    $("#countdown").textContent = String(left.seconds);
    $("#timer-bar").style.setProperty("--left", String(left.fraction));
    const closed = left.leftMs <= 0;
    for (const button of buttons) button.disabled = Boolean(mine) || closed;
    $("#answer-status").textContent = answerStatus(mine, closed);
  };
  tick();
  timer = setInterval(tick, 200);
}

function answerStatus(mine, closed) {
  if (mine?.refused === "question_closed") return "Too late — the question had closed.";
  if (mine?.refused) return mine.message;
  if (mine) return "Answer locked in — waiting for the others…";
  if (closed) return "Time's up!";
  return "";
}

function renderResults(state) {
  const question = state.question;
  const results = game.results?.question_index === question.index ? game.results : null;
  const mine = game.answers.get(question.index);
  const verdict = $("#result-verdict");
  if (!mine?.result) {
    verdict.textContent = "No answer this time";
    verdict.className = "verdict none";
  } else if (mine.result.correct) {
    verdict.textContent = "Correct!";
    verdict.className = "verdict correct";
  } else {
    verdict.textContent = "Wrong answer";
    verdict.className = "verdict wrong";
  }
  $("#results-question").textContent = question.text;
  if (results) renderChoiceCounts($("#results-counts"), question.choices, results);
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
connection.start();

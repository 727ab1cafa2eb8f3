// npm's socket.io-client playing one question through the edge; prints one JSON line per step.
// Usage: NODE_PATH=<dir>/node_modules node socketio_client.cjs <edge base URL> <quiz ID>
const { io } = require("socket.io-client");

const [url, quizId] = process.argv.slice(2);
const socket = io(url, { transports: ["websocket"], reconnection: false });
const say = (step, data) => console.log(JSON.stringify({ step, data }));
let answered = false;

socket.on("connect_error", (error) => {
  say("connect_error", String(error));
  process.exit(1);
});

socket.on("connect", async () => {
  say("joined", await socket.timeout(10000).emitWithAck("join_quiz", { quiz_id: quizId, nickname: "Node" }));
});

socket.on("quiz_state", async (message) => {
  if (message.state.phase !== "question_open" || answered) return;
  answered = true;
  say("answered", await socket.timeout(10000).emitWithAck("submit_answer", { question_index: 0, choice: 1 }));
});

socket.on("leaderboard_updated", (message) => {
  if (message.me && message.me.score > 0) {
    say("leaderboard", message);
    socket.disconnect();
  }
});

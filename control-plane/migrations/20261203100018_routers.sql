-- The router processes (`silo serve`, `silo dev`) serving this fleet. Each writes its row when
-- it starts and every heartbeat after, and deletes it when it stops; a router not seen for three
-- heartbeats is gone. Every database host's connection budget is split equally among the live
-- routers, so together they never hold more than the host's budget.
CREATE TABLE routers (
    id uuid PRIMARY KEY,
    hostname text NOT NULL,
    pid integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    seen_at timestamptz NOT NULL DEFAULT now()
);

//! A tiny authoritative DNS server on loopback UDP for the tests: it answers TXT queries from a
//! table the tests fill (`publish`), NXDOMAIN for names it does not hold, and `SERVFAIL` for the
//! names a test marks as broken. Every test app's `[domains] resolver` points at it, so domain
//! verification does a real DNS lookup over a real socket. One server for the whole process,
//! on a thread of its own (a test's runtime ends with the test); tests use names of their own.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, OnceLock};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{RData, Record, RecordType};

/// What a name answers.
#[derive(Debug, Clone)]
enum Answer {
    Txt(Vec<String>),
    ServerFailure,
}

pub struct TestDns {
    pub address: SocketAddr,
    records: Arc<Mutex<HashMap<String, Answer>>>,
}

impl TestDns {
    /// Publishes `values` as the TXT records of `name` (replacing what it had).
    pub fn publish(&self, name: &str, values: &[&str]) {
        self.set(
            name,
            Answer::Txt(values.iter().map(|value| (*value).to_owned()).collect()),
        );
    }

    /// Makes `name` answer `SERVFAIL`, as a broken nameserver would.
    pub fn fail(&self, name: &str) {
        self.set(name, Answer::ServerFailure);
    }

    fn set(&self, name: &str, answer: Answer) {
        self.records.lock().unwrap().insert(key(name), answer);
    }
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The process's test DNS server, started on first use.
pub fn dns() -> &'static TestDns {
    static DNS: OnceLock<TestDns> = OnceLock::new();
    DNS.get_or_init(|| {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("a loopback UDP port");
        let address = socket.local_addr().expect("a bound socket has an address");
        let records = Arc::new(Mutex::new(HashMap::new()));
        let table = records.clone();
        std::thread::Builder::new()
            .name("test-dns".to_owned())
            .spawn(move || serve(&socket, &table))
            .expect("the DNS thread starts");
        TestDns { address, records }
    })
}

fn serve(socket: &UdpSocket, records: &Mutex<HashMap<String, Answer>>) {
    let mut buffer = [0u8; 1500];
    loop {
        let Ok((length, peer)) = socket.recv_from(&mut buffer) else {
            continue;
        };
        let Ok(query) = Message::from_vec(&buffer[..length]) else {
            continue;
        };
        let mut response = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
        response.metadata.authoritative = true;
        response.metadata.recursion_desired = query.metadata.recursion_desired;
        response.metadata.recursion_available = true;
        for question in &query.queries {
            response.add_query(question.clone());
            let answer = records
                .lock()
                .unwrap()
                .get(&key(&question.name.to_ascii()))
                .cloned();
            match answer {
                None => response.metadata.response_code = ResponseCode::NXDomain,
                Some(Answer::ServerFailure) => {
                    response.metadata.response_code = ResponseCode::ServFail;
                }
                Some(Answer::Txt(values)) => {
                    if question.query_type == RecordType::TXT {
                        for value in values {
                            response.add_answer(Record::from_rdata(
                                question.name.clone(),
                                0,
                                RData::TXT(TXT::new(vec![value])),
                            ));
                        }
                    }
                }
            }
        }
        if let Ok(bytes) = response.to_vec() {
            let _ = socket.send_to(&bytes, peer);
        }
    }
}

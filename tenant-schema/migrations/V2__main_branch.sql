-- Every tenant starts with one branch so stock has somewhere to live before the owner adds more.
INSERT INTO branches (code, name) VALUES ('MAIN', 'Main branch');

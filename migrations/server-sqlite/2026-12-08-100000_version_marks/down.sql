DROP TABLE version_marks;
